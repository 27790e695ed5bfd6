"""Two tiny iterations of the closed loop end to end, with a kill between stages.

The model being trained is a tiny random Llama built here (real TRL training, real
transformers probing and BFCL evaluation); the user, assistant and judge are scripted
because the model is not the point here: orchestration, artifacts, resume and steering are.
"""

from __future__ import annotations

import json
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

STAGES = (
    "synth",
    "verify",
    "pool",
    "train",
    "probe",
    "judge",
    "expand",
    "weights",
    "eval",
    "stats",
)


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
        judge=JudgeSection(judges=["judge"], samples=2, max_cases=4),
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


def selfplay_oracle(checkpoint: Path) -> ScriptedChatModel:
    """Stands in for the trained checkpoint as the self-play assistant (the tiny random model
    cannot play; what is tested is that the loop hands the role to the checkpoint)."""
    assert (checkpoint / "config.json").is_file(), checkpoint
    return ScriptedChatModel(oracle, name=f"selfplay:{checkpoint.parent.parent.name}")


def request(run: Path, model_dir: Path, **extra) -> LoopRequest:
    extra.setdefault("selfplay_loader", selfplay_oracle)
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
        it = run / f"iter-{k:03d}"
        for name in (
            "scenarios.jsonl",
            "trajectories.jsonl",
            "verified.jsonl",
            "train_data.jsonl",
            "heldout.jsonl",
            "probe.jsonl",
            "probe_summary.json",
            "judged.jsonl",
            "expanded.jsonl",
            "weights.json",
            "eval/bfcl.json",
            "train/checkpoint/config.json",
            "train/metrics.csv",
        ):
            assert (it / name).exists(), it / name
        ids = [t.id for t in read_jsonl(it / "trajectories.jsonl", Trajectory)]
        assert len(ids) == len(set(ids))  # resume duplicated nothing
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
    for name in (
        "report.html",
        "summary.md",
        "plots/bfcl.png",
        "plots/funnel.png",
        "plots/reward.png",
        "plots/capability.png",
        "plots/volume.png",
    ):
        assert (run / name).is_file(), name
