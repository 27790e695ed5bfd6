"""The ablation runner at a tiny scale: a tiny random Llama, a two-iteration pool, real TRL
training and BFCL's own data and checkers (one entry per category instead of all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bench.ablation import load_pool, plan_points, run_ablation

from tooldojo import ToolDojoError
from tooldojo.jsonl import append_jsonl, iter_jsonl_dicts
from train_support import build_tiny_model, corpus_for, weather_trajectory

COLD = ["Paris", "Lyon", "Oslo", "Rome"]
SELFPLAY = ["Bern", "Kyiv", "Lima"]


def make_pool_run(root: Path) -> Path:
    """iter-000 (cold start) and iter-001 (self-play; it carries one hard sample over)."""
    run = root / "run"
    cold = [weather_trajectory(i, city) for i, city in enumerate(COLD)]
    later = [weather_trajectory(10 + i, city) for i, city in enumerate(SELFPLAY)]
    append_jsonl(run / "iter-000" / "train_data.jsonl", cold)
    append_jsonl(run / "iter-001" / "train_data.jsonl", [*later, cold[0]])
    return run


def test_pool_and_grid(tmp_path):
    run = make_pool_run(tmp_path)
    pool = load_pool(run, seed=0)
    assert len(pool.rows) == 7  # the carried hard sample counts once, for iteration 0
    assert len(pool.cold_start) == 4 and pool.iteration["t0"] == 0
    names = [p.name for p in plan_points(pool, [2, 6])]
    # the cold-start volume (4) joins the volume points, so the self-play contrast is even
    assert names == ["base", "sft-2", "sft-4", "sft-6", "sft+grpo-6", "cold-start-4"]
    with pytest.raises(ToolDojoError, match="exceeds the pool"):
        plan_points(pool, [8])


@pytest.mark.slow
def test_tiny_ablation_trains_evaluates_and_resumes(tmp_path):
    run = make_pool_run(tmp_path)
    rows = [r for _, r in iter_jsonl_dicts(run / "iter-000" / "train_data.jsonl")]
    from tooldojo.model import Trajectory

    model = build_tiny_model(
        tmp_path / "model", corpus_for([Trajectory.model_validate(r) for r in rows])
    )
    config = tmp_path / "loop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "loop": {
                    "model": str(model),
                    "train": {
                        "sft": {"max_steps": 1, "batch_size": 2, "export_gguf": None},
                        "grpo": {
                            "max_steps": 1,
                            "batch_size": 2,
                            "num_generations": 2,
                            "max_completion_length": 8,
                            "export_gguf": None,
                            "beta": 0.0,
                        },
                    },
                    "eval": {"max_tokens": 8, "concurrency": 2},
                }
            }
        )
    )
    out = tmp_path / "ablation"
    lines: list[str] = []
    report = run_ablation(run, config, out, [2, 6], limit=1, progress=lines.append)
    names = [p["name"] for p in report["points"]]
    assert names == ["base", "sft-2", "sft-4", "sft-6", "sft+grpo-6", "cold-start-4"]
    by_name = {p["name"]: p for p in report["points"]}
    for point in report["points"]:
        scores = point["results"]["fc"]["categories"]
        assert {c: s["total"] for c, s in scores.items()} == {"simple_python": 1, "irrelevance": 1}
        # the tiny model answers two entries in milliseconds: the point's eval_s (0.1 s) rounds
        # that to 0, the mode's timing (ms) does not
        assert point["results"]["fc"]["eval_s"] > 0 and point["total_s"] >= point["eval_s"]
        data = out / "points" / point["name"] / "train_data.jsonl"
        if point["size"]:
            assert len(data.read_text().splitlines()) == point["size"]
            assert point["samples"] >= point["size"] and point["train_s"] > 0
    assert by_name["cold-start-4"]["selfplay_share"] == 0.0
    pool = load_pool(run, seed=0)
    assert by_name["sft-4"]["selfplay_share"] == pool.selfplay_share(pool.rows[:4])
    assert by_name["sft-6"]["selfplay_share"] > 0
    grpo = by_name["sft+grpo-6"]
    assert grpo["grpo_steps"] == 1 and "steps_with_reward_variance" in grpo
    assert grpo["sft_steps"] == by_name["sft-6"]["sft_steps"]  # its SFT run is shared
    table = (out / "ablation.md").read_text()
    assert table.count("\n") == 2 + len(names)
    assert json.loads((out / "ablation.json").read_text())["pool"] == {
        "trajectories": 7,
        "cold_start": 4,
        "selfplay": 3,
    }

    # a second run skips every finished point
    stamp = (out / "points" / "sft-2" / "result.json").stat().st_mtime_ns
    run_ablation(run, config, out, [2, 6], limit=1, progress=lines.append)
    assert (out / "points" / "sft-2" / "result.json").stat().st_mtime_ns == stamp
