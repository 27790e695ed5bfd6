"""bench/tool_rendering.py's parts that decide what it measures: the rendering swap reaches the
native prompt (so an arm really trains and asks in its rendering), held-out turns count once,
and call turns and no-call decisions are counted apart."""

from __future__ import annotations

import pytest
import yaml
from bench.heldout_probe import distinct_heldout, summarize
from bench.tool_rendering import run_rendering_check, use_rendering

from tooldojo.jsonl import append_jsonl
from tooldojo.llm._shared import render_chat
from tooldojo.llm.codecs import get_codec
from tooldojo.loop.controller import is_heldout
from tooldojo.loop.probe import ProbeRecord
from tooldojo.model import Label, LabelCall, Message, ToolCall
from train_support import WEATHER, build_tiny_model, corpus_for, weather_trajectory


def test_the_swap_reaches_the_native_prompt_and_is_undone() -> None:
    def system() -> str:
        chat = render_chat([Message(role="user", content="hi")], [WEATHER], get_codec("hermes"))
        return chat[0]["content"]

    compact = system()
    try:
        use_rendering("json")
        as_json = system()
    finally:
        use_rendering("compact")
    assert '"parameters":{' in as_json and '"parameters":{' not in compact
    assert f"{WEATHER.name}(" in compact and system() == compact


def test_each_heldout_conversation_counts_once(tmp_path) -> None:
    # A run's heldout.jsonl is cumulative: iteration 1's file repeats iteration 0's turns.
    first = [weather_trajectory(i, city) for i, city in enumerate(["Oslo", "Rome"])]
    for trajectory in first:
        trajectory.split = "heldout"
    later = [*first, weather_trajectory(5, "Lima").model_copy(update={"split": "heldout"})]
    failed = weather_trajectory(6, "Bern").model_copy(update={"split": "heldout", "passed": False})
    train = weather_trajectory(7, "Kyiv")
    append_jsonl(tmp_path / "a.jsonl", first)
    append_jsonl(tmp_path / "b.jsonl", [*later, failed, train])
    held = distinct_heldout([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    assert [t.id for t in held] == ["t0", "t1", "t5"]


def test_heldout_ids_stay_unique_across_runs_and_a_fraction_splits_a_synth_run(tmp_path) -> None:
    # Two runs number their scenarios alike: run b's t0 is another conversation than run a's.
    a = weather_trajectory(0, "Oslo").model_copy(update={"split": "heldout"})
    b = weather_trajectory(0, "Lima").model_copy(update={"split": "heldout"})
    append_jsonl(tmp_path / "a.jsonl", [a])
    append_jsonl(tmp_path / "b.jsonl", [b])
    held = distinct_heldout([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    assert [t.id for t in held] == ["t0", "1:t0"]
    # A synth run's trajectories are all "train": a fraction picks the loop's held-out side.
    synth = [
        weather_trajectory(i, "Oslo").model_copy(update={"scenario_id": f"s-{i}"})
        for i in range(40)
    ]
    append_jsonl(tmp_path / "synth.jsonl", synth)
    assert distinct_heldout([tmp_path / "synth.jsonl"]) == []
    picked = distinct_heldout([tmp_path / "synth.jsonl"], 0.25)
    expected = [t.id for t in synth if is_heldout(t.scenario_id, 0.25)]
    assert [t.id for t in picked] == expected and 0 < len(expected) < 40
    assert {t.split for t in picked} == {"heldout"}


def _record(i: int, *, kind: str, correct: bool, called: str | None, error: str | None):
    wanted = [LabelCall(name="get_weather", arguments={"location": ["Oslo"]})]
    return ProbeRecord(
        id=f"r{i}",
        trajectory_id=f"t{i}",
        turn=0,
        split="heldout",
        category="single" if kind == "call" else "irrelevance",
        label=Label(kind="call", calls=wanted) if kind == "call" else Label(kind="refuse"),
        kind=kind,
        calls=[ToolCall(id="c", name=called, arguments={})] if called else [],
        correct=correct,
        error_class=error,
    )


def test_call_turns_and_decisions_are_counted_apart() -> None:
    rows = [
        _record(0, kind="call", correct=True, called="get_weather", error=None),
        _record(1, kind="call", correct=False, called="get_weather", error="wrong_value"),
        _record(2, kind="call", correct=False, called=None, error="format"),
        _record(
            3, kind="no_call", correct=False, called="get_weather", error="called_when_should_not"
        ),
        _record(4, kind="no_call", correct=True, called=None, error=None),
    ]
    summary = summarize(rows)
    assert summary["call"] == [1, 3] and summary["call_right_tools"] == [2, 3]
    assert summary["call_format_errors"] == [1, 3] and summary["no_call"] == [1, 2]
    assert summary["errors"] == {
        "call/wrong_value": 1,
        "call/format": 1,
        "no_call/called_when_should_not": 1,
    }


@pytest.mark.slow
def test_both_arms_train_probe_and_resume(tmp_path) -> None:
    """A tiny random Llama, real TRL training, the loop's probe: each arm's prompts carry its
    rendering (the JSON arm trains on more tokens), and a second run reuses both arms."""
    train = [weather_trajectory(i, city) for i, city in enumerate(["Paris", "Lyon", "Oslo"])]
    held = [
        weather_trajectory(10 + i, city).model_copy(update={"split": "heldout"})
        for i, city in enumerate(["Rome", "Lima"])
    ]
    append_jsonl(tmp_path / "train.jsonl", train)
    append_jsonl(tmp_path / "heldout.jsonl", held)
    model = build_tiny_model(tmp_path / "model", corpus_for([*train, *held]))
    config = tmp_path / "loop.yaml"
    sft = {"max_steps": 1, "batch_size": 2, "export_gguf": None}
    probe = {"max_tokens": 8, "concurrency": 2}
    config.write_text(
        yaml.safe_dump({"loop": {"model": str(model), "train": {"sft": sft}, "probe": probe}})
    )
    out = tmp_path / "rendering"
    report = run_rendering_check(
        tmp_path / "train.jsonl", [tmp_path / "heldout.jsonl"], config, out, max_length=2048
    )
    arms = report["arms"]
    assert arms["json"]["train_tokens"] > arms["compact"]["train_tokens"]
    for arm in arms.values():
        assert arm["samples"] == 6 and arm["dropped_too_long"] == 0
        assert arm["call"][1] == 2 and arm["no_call"][1] == 0  # two held-out call turns
    tools = report["tokens_per_tool"]
    assert tools["tools"] == 1 and tools["json"] > tools["compact"]
    stamp = (out / "json" / "result.json").stat().st_mtime_ns
    again = run_rendering_check(
        tmp_path / "train.jsonl", [tmp_path / "heldout.jsonl"], config, out, max_length=2048
    )
    assert again["arms"] == arms and (out / "json" / "result.json").stat().st_mtime_ns == stamp
