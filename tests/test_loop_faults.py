"""One tiny loop iteration whose user, assistant and judge backends fail on a seeded 10% of
calls: the loop still completes, the failures are retried or counted, nothing half-written."""

from __future__ import annotations

import json

import pytest

from test_loop import STAGES, judge_says_model_wrong, tiny_config, tiny_model  # noqa: F401 (fixture)
from test_synth_orchestration import copying_user, oracle
from tooldojo.jsonl import read_jsonl
from tooldojo.llm.faults import FaultConfig, FaultyChatModel
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.loop.controller import LoopRequest, run_loop
from tooldojo.model import RunManifest, Trajectory


@pytest.mark.slow
def test_loop_completes_with_injected_faults(tmp_path, tiny_model):  # noqa: F811
    def faulty(model, seed: int, rate: float = 0.1) -> FaultyChatModel:  # type: ignore[no-untyped-def]
        return FaultyChatModel(model, FaultConfig(rate=rate, seed=seed, timeout_s=0.01))

    models = {
        "user": faulty(ScriptedChatModel(copying_user, name="scripted-user"), 0),
        "assistant": faulty(ScriptedChatModel(oracle, name="oracle"), 1),
        "judge": faulty(ScriptedChatModel(judge_says_model_wrong, name="scripted-judge"), 2),
    }
    config = tiny_config(tiny_model)
    config.synth.n = 40
    config.synth.concurrency = 1  # one episode at a time: the faults hit the same calls
    config.eval.baseline = False
    run = tmp_path / "run"
    run_loop(LoopRequest(specs=[], run=run, iterations=1, config=config, models=models))
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    for stage in STAGES:
        assert manifest.stages[f"iter-000/{stage}"].status == "done", stage
    injected = {role: sum(model.injected.values()) for role, model in models.items()}
    assert injected["user"] + injected["assistant"] >= 3, injected

    synth = json.loads((run / "iter-000" / "manifest.json").read_text())["stages"]["synth"]
    assert synth["faults"]["assistant"]["calls"] == models["assistant"].calls
    counts = synth["counts"]
    assert counts["finished"] + counts["dropped"] + counts["failed"] == counts["planned"]
    assert counts["retried"] >= 1
    # Every line whole and once; no injected fault text recorded as a turn.
    ids = [t.id for t in read_jsonl(run / "iter-000" / "trajectories.jsonl", Trajectory)]
    assert len(ids) == len(set(ids)) == counts["finished"]
    assert "injected fault" not in (run / "iter-000" / "train_data.jsonl").read_text()
