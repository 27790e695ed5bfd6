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
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.loop.config import (
    EvalSection,
    ExpandSection,
    JudgeSection,
    LoopConfig,
    ProbeSection,
    SelfplaySection,
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
        selfplay=SelfplaySection(roles=["assistant", "user"], forced_share=[0.5]),
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
    """Stands in for the trained checkpoint as the self-play user and assistant (the tiny
    random model cannot play; what is tested is that the loop hands the roles to the
    checkpoint and trains on what they wrote)."""
    from tooldojo.synth import CURRENT_EPISODE

    assert (checkpoint / "config.json").is_file(), checkpoint

    def play(messages, tools):
        state = CURRENT_EPISODE.get()
        pending = state is not None and state.pending is not None
        return oracle(messages, tools) if pending else copying_user(messages, tools)

    return ScriptedChatModel(play, name=f"selfplay:{checkpoint.parent.parent.name}")


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


def synth_only(run: Path, config: LoopConfig, models: dict, lines: list[str]) -> RunManifest:
    """One loop run stopped after iteration 0's synth stage, its progress lines in ``lines``."""
    with pytest.raises(StopLoop):
        run_loop(
            LoopRequest(
                specs=[],
                run=run,
                iterations=1,
                config=config,
                models=models,
                stop_after="iter-000/synth",
                progress=lines.append,
            )
        )
    return RunManifest.model_validate_json((run / "manifest.json").read_text())


def check_iteration_contents(it: Path, k: int) -> None:
    """What each artifact of an iteration must say, beyond existing."""
    from tooldojo.loop.judge import JudgedRecord

    trajectories = list(read_jsonl(it / "trajectories.jsonl", Trajectory))
    for role, configured in (("assistant", "oracle"), ("user", "scripted-user")):
        played_by = {t.metadata["models"][role] for t in trajectories}
        # iteration 0: the configured models; from iteration 1 on: the last checkpoint
        assert played_by == ({configured} if k == 0 else {f"selfplay:iter-{k - 1:03d}"}), role
    passed = [t for t in read_jsonl(it / "verified.jsonl", Trajectory) if t.passed]
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    assert passed and pool and all(t.passed for t in pool)
    # multi-role SFT: the self-played user's requests that reached passed trajectories
    user_samples = [t for t in pool if t.metadata.get("role") == "user"]
    if k == 0:
        assert not user_samples
    else:
        accepted = {m.content for t in passed for m in t.messages if m.role == "user"}
        assert user_samples and all(t.messages[-1].content in accepted for t in user_samples)
    probe = list(read_jsonl(it / "probe.jsonl", ProbeRecord))
    assert probe and all(r.correct == (r.error_class is None) for r in probe)
    assert all(r.kind == ("call" if r.label.kind == "call" else "no_call") for r in probe)
    summary = json.loads((it / "probe_summary.json").read_text())
    call_rows = [r for r in probe if r.kind == "call" and r.split == "train"]
    assert summary["kind"]["train/call"]["total"] == len(call_rows)
    assert summary["sample"]["train"]["probed"] == len([r for r in probe if r.split == "train"])
    judged = list(read_jsonl(it / "judged.jsonl", JudgedRecord))
    assert len(judged) == min(4, sum(1 for r in probe if r.split == "train" and not r.correct))
    assert all(len(j.votes) == 2 and j.decision == "model_wrong" for j in judged)
    expanded = list(read_jsonl(it / "expanded.jsonl", Scenario))
    assert all(s.metadata["edde"]["error_class"] for s in expanded)
    weights = json.loads((it / "weights.json").read_text())
    assert set(weights["categories"]) == {r.category for r in probe if r.split == "train"}
    accounting = json.loads((it / "accounting.json").read_text())
    assistant_messages = sum(m.role == "assistant" for t in trajectories for m in t.messages)
    assert accounting["assistant"]["model"] == assistant_messages  # scripted: nothing forced
    stats = json.loads((it / "loop_stats.json").read_text())
    assert stats["iteration"] == k and stats["judge"]["votes"] == 2 * len(judged)
    assert stats["expanded"] == (
        {
            c: sum(s.metadata["edde"]["error_class"] == c for s in expanded)
            for c in stats["expanded"]
        }
    )
    assert (it / "train/checkpoint/config.json").is_file()
    assert (it / "train/metrics.csv").read_text().startswith("step")
    bfcl = json.loads((it / "eval/bfcl.json").read_text())
    assert set(bfcl) == {"prompting", "fc"}


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
        check_iteration_contents(it, k)
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

    # the previous iteration's expansions are followed into the next one, per error class
    stats = json.loads((run / "iter-001" / "loop_stats.json").read_text())
    outcomes = stats["previous_expansions"]
    assert sum(row["scenarios"] for row in outcomes.values()) == len(expanded)
    assert sum(row["played"] for row in outcomes.values()) == len(expanded) - len(
        dropped_ids & {s.id for s in expanded}
    )
    selfplay = json.loads((run / "selfplay.json").read_text())
    assert [row["iteration"] for row in selfplay["iterations"]] == [0, 1]
    for row in selfplay["iterations"]:
        summary = json.loads((run / f"iter-{row['iteration']:03d}/probe_summary.json").read_text())
        assert row["heldout_call_accuracy"] == summary["kind"]["heldout/call"]["accuracy"]
        assert row["roles"]["assistant"]["own"] == 1.0  # the scripted players force nothing
    assert selfplay["iterations"][1]["selfplay_roles"] == ["assistant", "user"]

    bfcl = json.loads((run / "iter-001" / "eval" / "bfcl.json").read_text())
    assert set(bfcl) == {"prompting", "fc"}
    assert bfcl["fc"]["tool_format"].startswith("codec:")
    for name in ("report.html", "summary.md"):
        text = (run / name).read_text()
        assert "iter-000" in text and "iter-001" in text, name  # both iterations reported
    for name in ("bfcl", "funnel", "reward", "capability", "volume"):
        image = (run / "plots" / f"{name}.png").read_bytes()
        assert image.startswith(b"\x89PNG") and len(image) > 5000, name  # a drawn plot


def test_failed_synthesis_episodes_are_retried_when_the_loop_resumes(tmp_path, tiny_model):
    """An episode whose assistant fails leaves the synthesis stage incomplete; the next resume
    plays it again (finished ones are kept) and only then is the stage done."""
    from test_synth_orchestration import oracle as follow_labels

    failures = [3]  # the first attempt and synthesis' own two retries all fail

    def flaky(messages, tools):
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("backend down")
        return follow_labels(messages, tools)

    config = tiny_config(tiny_model)
    config.eval.baseline = False
    config.synth.n = 4
    config.synth.concurrency = 1

    def run_once(lines: list[str]) -> RunManifest:
        models = {
            "user": ScriptedChatModel(copying_user, name="scripted-user"),
            "assistant": ScriptedChatModel(flaky, name="flaky"),
        }
        return synth_only(tmp_path / "run", config, models, lines)

    first = run_once([])
    record = first.stages["iter-000/synth"]
    assert record.counts["failed"] == 1 and record.counts["incomplete"] == 1
    assert record.counts["retried"] == 2
    played = list(read_jsonl(tmp_path / "run/iter-000/trajectories.jsonl", Trajectory))
    lines: list[str] = []
    second = run_once(lines)
    assert "iter-000/synth: running" in lines  # not "done, skipped"
    record = second.stages["iter-000/synth"]
    assert record.counts["failed"] == 0 and record.counts["incomplete"] == 0
    replayed = list(read_jsonl(tmp_path / "run/iter-000/trajectories.jsonl", Trajectory))
    assert [t.id for t in replayed[: len(played)]] == [t.id for t in played]  # kept, in place
    assert len(replayed) == len(played) + 1
    third: list[str] = []
    run_once(third)
    assert "iter-000/synth: done, skipped" in third


@pytest.mark.slow
def test_swapping_the_model_redoes_probe_judge_and_eval(tmp_path, tiny_model):
    """Resume is by inputs: the same run with another starting model keeps the synthesized
    data but redoes training and everything that read the old model."""
    other = build_tiny_model(
        tmp_path / "other",
        [tool.model_dump_json() for tool in office_tools()] * 3,
        seed=1,
    )
    run = tmp_path / "run"
    first = request(run, tiny_model)
    first.iterations = 1
    run_loop(first)
    before = RunManifest.model_validate_json((run / "manifest.json").read_text()).stages
    probe_before = (run / "iter-000" / "probe.jsonl").read_text()

    lines: list[str] = []
    second = request(run, other, progress=lines.append)
    second.iterations = 1
    run_loop(second)
    after = RunManifest.model_validate_json((run / "manifest.json").read_text()).stages
    for stage in ("synth", "verify", "pool"):
        assert f"iter-000/{stage}: done, skipped" in lines
        assert after[f"iter-000/{stage}"].started_at == before[f"iter-000/{stage}"].started_at
    probe_after = (run / "iter-000" / "probe.jsonl").read_text()
    # The judge reads the probe's answers, not the model: it is redone exactly when they changed
    # (two tiny random models can give the same unusable answers).
    judge_line = "redoing" if probe_after != probe_before else "skipped"
    assert any(line.startswith("iter-000/judge: ") and judge_line in line for line in lines)
    for stage in (
        "base/eval",
        "iter-000/train",
        "iter-000/base-probe",
        "iter-000/probe",
        "iter-000/eval",
    ):
        assert f"{stage}: inputs changed, redoing" in lines, stage
        assert after[stage].inputs != before[stage].inputs
        assert after[stage].status == "done"
    # the stale probe was cleared, not resumed: one record per probed turn, from the new model
    records = list(read_jsonl(run / "iter-000" / "probe.jsonl", ProbeRecord))
    assert len({r.id for r in records}) == len(records) == len(probe_before.splitlines())
    trained = json.loads((run / "iter-000/train/checkpoint/tooldojo_train.json").read_text())
    assert trained["base_model"].endswith("other")  # trained from the new model


def test_a_loop_whose_data_all_fails_verification_stops_and_still_reports(tmp_path, tiny_model):
    """Nothing that failed a gate is trained on: the loop ends after the pool stage, says why,
    and writes a report that shows the failures."""

    def junk(messages, tools):
        return Completion(text="%% 12 34 ## ?? 56")

    config = tiny_config(tiny_model)
    config.eval.baseline = False
    config.synth.n = 4
    config.synth.categories = ["single"]
    lines: list[str] = []
    models = {
        "user": ScriptedChatModel(copying_user, name="scripted-user"),
        "assistant": ScriptedChatModel(junk, name="junk"),
    }
    rundir = run_loop(
        LoopRequest(
            specs=[],
            run=tmp_path / "run",
            iterations=2,
            config=config,
            models=models,
            progress=lines.append,
        )
    )
    verified = list(read_jsonl(rundir.root / "iter-000" / "verified.jsonl", Trajectory))
    assert verified and not any(t.passed for t in verified)
    stops = [line for line in lines if line.startswith("the loop stops: ")]
    assert len(stops) == 1 and f"0 of {len(verified)} trajectories passed" in stops[0]
    manifest = RunManifest.model_validate_json((rundir.root / "manifest.json").read_text())
    assert manifest.stages["iter-000/pool"].status == "failed"
    assert "iter-000/train" not in manifest.stages and not (rundir.root / "iter-001").exists()
    assert not (rundir.root / "iter-000" / "train_data.jsonl").exists()
    report = (rundir.root / "report.html").read_text()
    assert "iter-000" in report


def test_iteration_zero_takes_a_finished_synth_run_and_refuses_one_under_way(tmp_path):
    """``loop.synth.first_from``: a large synthesis run made on its own becomes iteration 0's
    data, copied whole; new data there redoes the stage; a run not yet done is refused."""
    from tooldojo.errors import ToolDojoError
    from tooldojo.jsonl import append_jsonl
    from train_support import weather_trajectory

    source = tmp_path / "synth"
    source.mkdir()
    append_jsonl(source / "trajectories.jsonl", [weather_trajectory(i, "Oslo") for i in range(3)])
    manifest = {"stages": {"synth": {"status": "running", "counts": {}}}}
    (source / "manifest.json").write_text(json.dumps(manifest))
    config = LoopConfig(
        model="embedded",
        synth=SynthSection(first_from=str(source), executor=OFFICE),
        eval=EvalSection(baseline=False),
    )

    def run_once(lines: list[str]) -> None:
        synth_only(tmp_path / "run", config, {}, lines)

    with pytest.raises(ToolDojoError, match=r"synth/manifest.json: the synthesis is running"):
        run_once([])
    assert not (tmp_path / "run/iter-000/trajectories.jsonl").exists()
    # Taken as it stands when asked (first_from_partial), and said so in the counts.
    config.synth.first_from_partial = True
    synth_only(tmp_path / "partial", config, {}, [])
    record = RunManifest.model_validate_json((tmp_path / "partial/manifest.json").read_text())
    assert record.stages["iter-000/synth"].counts["partial"] == 1
    config.synth.first_from_partial = False
    manifest["stages"]["synth"]["status"] = "done"
    (source / "manifest.json").write_text(json.dumps(manifest))
    run_once([])
    copied = tmp_path / "run/iter-000/trajectories.jsonl"
    assert copied.read_bytes() == (source / "trajectories.jsonl").read_bytes()
    record = RunManifest.model_validate_json((tmp_path / "run/manifest.json").read_text())
    assert record.stages["iter-000/synth"].counts == {
        "planned": 0,
        "finished": 3,
        "dropped": 0,
        "imported": 1,
    }
    again: list[str] = []
    run_once(again)
    assert "iter-000/synth: done, skipped" in again
    append_jsonl(source / "trajectories.jsonl", [weather_trajectory(3, "Rome")])
    more: list[str] = []
    run_once(more)
    assert "iter-000/synth: inputs changed, redoing" in more
    assert len(list(read_jsonl(copied, Trajectory))) == 4
