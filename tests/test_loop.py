"""Two tiny iterations of the closed loop end to end, with a kill between stages.

The model being trained is a tiny random Llama built here (real TRL training, real
transformers probing and BFCL evaluation); the user, assistant and judge are scripted
because the model is not the point here: orchestration, artifacts, resume and steering are.
"""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest

from test_synth_orchestration import OFFICE, copying_user, office_tools, oracle
from tooldojo.jsonl import read_jsonl
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.loop.config import (
    EvalSection,
    ExpandSection,
    JudgeSection,
    LoopConfig,
    ProbeSection,
    SynthSection,
    TrainSection,
)
from tooldojo.loop.controller import LoopRequest, StopLoop, run_loop
from tooldojo.loop.probe import ProbeRecord
from tooldojo.model import RunManifest, Scenario, Trajectory
from train_support import build_tiny_model

STAGES = ("synth", "verify", "pool", "train", "probe", "judge", "expand", "weights", "eval")


def judge_says_model_wrong(messages, tools):
    return json.dumps({"verdict": "model_wrong", "reason": "the label is right"})


def tiny_config(model_dir: Path) -> LoopConfig:
    return LoopConfig(
        model=str(model_dir),
        synth=SynthSection(
            n=10,
            executor=OFFICE,
            values="schema",
            concurrency=2,
            heldout_fraction=0.3,
            categories=["single", "parallel", "multiple", "irrelevance", "clarify"],
        ),
        train=TrainSection(
            sft={
                "max_steps": 3,
                "learning_rate": 1e-2,
                "batch_size": 4,
                "max_length": 2048,
                "export_gguf": None,
            },
            grpo={
                "max_steps": 2,
                "batch_size": 4,
                "num_generations": 4,
                "max_length": 2048,
                "max_completion_length": 12,
                "learning_rate": 1e-4,
                "export_gguf": None,
            },
        ),
        probe=ProbeSection(max_samples=6, max_tokens=12),
        judge=JudgeSection(judges=["judge"], max_cases=4),
        expand=ExpandSection(per_error=1, max_total=3),
        eval=EvalSection(
            bfcl_categories=["simple_python", "irrelevance"],
            bfcl_limit=1,
            modes=["prompting", "fc"],
            max_tokens=12,
        ),
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    corpus = [tool.model_dump_json() for tool in office_tools()] * 3
    return build_tiny_model(tmp_path_factory.mktemp("loop") / "model", corpus)


def request(run: Path, model_dir: Path, **extra) -> LoopRequest:
    models = {
        "user": ScriptedChatModel(copying_user, name="scripted-user"),
        "assistant": ScriptedChatModel(oracle, name="oracle"),
        "judge": ScriptedChatModel(judge_says_model_wrong, name="scripted-judge"),
    }
    return LoopRequest(
        specs=[], run=run, iterations=2, config=tiny_config(model_dir), models=models, **extra
    )


@pytest.mark.slow
def test_two_tiny_iterations_with_a_kill_between_stages(tmp_path, tiny_model):
    run = tmp_path / "run"
    with pytest.raises(StopLoop):
        run_loop(request(run, tiny_model, stop_after="iter-000/base-probe"))
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    finished = {
        key: record.finished_at
        for key, record in manifest.stages.items()
        if record.status == "done"
    }
    assert {"base/eval", "iter-000/synth", "iter-000/train", "iter-000/base-probe"} <= set(finished)
    assert "iter-000/probe" not in finished
    trajectories_before = (run / "iter-000" / "trajectories.jsonl").read_bytes()

    lines: list[str] = []
    run_loop(request(run, tiny_model, progress=lines.append))
    assert "iter-000/synth: done, skipped" in lines
    assert "iter-000/train: done, skipped" in lines
    assert (run / "iter-000" / "trajectories.jsonl").read_bytes() == trajectories_before
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    for key, finished_at in finished.items():
        assert manifest.stages[key].finished_at == finished_at, key  # not redone
    for k in (0, 1):
        for stage in STAGES:
            record = manifest.stages[f"iter-{k:03d}/{stage}"]
            assert record.status == "done" and record.outputs, (k, stage)

    for k in (0, 1):
        check_iteration_artifacts(run / f"iter-{k:03d}", tiny_config(tiny_model))
    kinds = [
        json.loads((run / f"iter-{k:03d}/train/result.json").read_text())["kind"] for k in (0, 1)
    ]
    assert kinds == ["sft", "grpo"]

    # Iteration 1's failures steer iteration 2: weights follow accuracy, expansions are played.
    probe = list(read_jsonl(run / "iter-000" / "probe.jsonl", ProbeRecord))
    weights = json.loads((run / "iter-000" / "weights.json").read_text())
    accuracy = {}
    for record in probe:
        accuracy.setdefault(record.category, []).append(record.correct)
    rates = {c: sum(v) / len(v) for c, v in accuracy.items()}
    for a in rates:
        for b in rates:
            if rates[a] < rates[b]:
                assert weights["categories"][a] > weights["categories"][b]
    plan = json.loads((run / "iter-001" / "manifest.json").read_text())["config"]["plan"]
    assert plan["weights"] == weights
    expanded = list(read_jsonl(run / "iter-000" / "expanded.jsonl", Scenario))
    assert expanded and all(s.parent_id for s in expanded)
    played = {
        t.scenario_id for t in read_jsonl(run / "iter-001" / "trajectories.jsonl", Trajectory)
    }
    dropped = run / "iter-001" / "dropped.jsonl"
    dropped_ids = (
        {json.loads(line)["id"] for line in dropped.read_text().splitlines()}
        if dropped.exists()
        else set()
    )
    assert all(s.id in played | dropped_ids for s in expanded)

    bfcl = json.loads((run / "iter-001" / "eval" / "bfcl.json").read_text())
    assert set(bfcl) == {"prompting", "fc"}
    assert bfcl["fc"]["tool_format"].startswith("codec:")
    report = (run / "report.html").read_text()
    for name in ("bfcl.png", "funnel.png", "reward.png", "capability.png", "volume.png"):
        assert f"plots/{name}" in report, name  # the report shows the plot...
        png = (run / "plots" / name).read_bytes()  # ...and the plot is a real image
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", name
        width, height = struct.unpack(">II", png[16:24])
        assert width >= 200 and height >= 150 and len(png) > 2000, (name, width, height)
    summary = (run / "summary.md").read_text()
    assert "iter-000" in summary and "iter-001" in summary  # both iterations reported


def check_iteration_artifacts(it: Path, config: LoopConfig) -> None:
    """Each artifact of an iteration holds what its stage claims, not merely exists."""
    scenarios = list(read_jsonl(it / "scenarios.jsonl", Scenario))
    scenario_ids = [s.id for s in scenarios]
    assert len(scenario_ids) == len(set(scenario_ids)) >= config.synth.n

    trajectories = list(read_jsonl(it / "trajectories.jsonl", Trajectory))
    ids = [t.id for t in trajectories]
    assert ids and len(ids) == len(set(ids))  # resume duplicated nothing
    assert {t.scenario_id for t in trajectories} <= set(scenario_ids)

    verified = list(read_jsonl(it / "verified.jsonl", Trajectory))
    assert sorted(t.id for t in verified) == sorted(ids)  # every trajectory verified once
    gates = set(config.verify.gates)
    for trajectory in verified:
        assert {v.gate for v in trajectory.verdicts} == gates, trajectory.id
        assert trajectory.passed == all(v.passed for v in trajectory.verdicts), trajectory.id

    train = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    heldout = list(read_jsonl(it / "heldout.jsonl", Trajectory))
    assert train and all(t.passed and t.split == "train" for t in train)
    assert all(t.passed and t.split == "heldout" for t in heldout)
    assert not {t.id for t in train} & {t.id for t in heldout}  # no held-out row trained on

    probe = list(read_jsonl(it / "probe.jsonl", ProbeRecord))
    pools = {"train": {t.id for t in train}, "heldout": {t.id for t in heldout}}
    assert probe and all(r.trajectory_id in pools[r.split] for r in probe)  # probed the pools
    assert all(r.correct or r.reason for r in probe)  # every miss says why
    assert all(r.calls for r in probe if r.schema_ok)
    summary = json.loads((it / "probe_summary.json").read_text())
    total = sum(cell["total"] for cell in summary["split"].values())
    correct = sum(cell["correct"] for cell in summary["split"].values())
    assert total == len(probe) and correct == sum(r.correct for r in probe)

    judged = [json.loads(line) for line in (it / "judged.jsonl").read_text().splitlines()]
    assert all(r["decision"] in ("model_wrong", "label_wrong", "both_wrong") for r in judged)
    assert len(judged) <= config.judge.max_cases
    assert {r["trajectory_id"] for r in judged} <= {t.id for t in train}  # judged the pool
    expanded = list(read_jsonl(it / "expanded.jsonl", Scenario))
    assert len(expanded) <= config.expand.max_total and all(s.parent_id for s in expanded)

    weights = json.loads((it / "weights.json").read_text())
    categories = weights["categories"]
    assert set(categories) == {r.category for r in probe}
    assert all(w > 0 for w in categories.values())
    assert abs(sum(categories.values()) / len(categories) - 1) < 1e-3  # mean-normalized

    bfcl = json.loads((it / "eval" / "bfcl.json").read_text())
    assert set(bfcl) == set(config.eval.modes)
    for mode, result in bfcl.items():
        for category in config.eval.bfcl_categories:
            counts = result["categories"][category]
            assert counts["total"] == config.eval.bfcl_limit, (mode, category)
            assert 0 <= counts["correct"] <= counts["total"]

    checkpoint = json.loads((it / "train" / "checkpoint" / "config.json").read_text())
    assert checkpoint["model_type"] == "llama"
    with (it / "train" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "training logged no step"
    value = "loss" if "loss" in rows[0] else "reward"
    assert all(math.isfinite(float(row[value])) for row in rows if row.get(value))
