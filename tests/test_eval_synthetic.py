"""Held-out synthetic evaluation: each assistant turn answered from its history, gated."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.eval.models import EvalModel
from tooldojo.eval.synthetic import SyntheticSettings, run_synthetic
from tooldojo.jsonl import append_jsonl
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory

WEATHER = Tool(
    name="get_current_weather",
    description="Weather now.",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
)


def _trajectory(identifier: str, split: str, city: str) -> Trajectory:
    call = ToolCall(id="c1", name="get_current_weather", arguments={"location": city})
    return Trajectory(
        id=identifier,
        category="single",
        split=split,  # type: ignore[arg-type]
        tools=[WEATHER],
        messages=[
            Message(role="user", content=f"Weather in {city}?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="c1", name="get_current_weather", content="18C"),
            Message(role="assistant", content=f"It is 18C in {city}."),
        ],
        labels=[
            Label(
                kind="call",
                calls=[LabelCall(name="get_current_weather", arguments={"location": [city]})],
            ),
            Label(kind="text"),
        ],
    )


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "verified.jsonl"
    append_jsonl(
        path,
        [
            _trajectory("t-train", "train", "Rome"),
            _trajectory("t-1", "heldout", "Paris"),
            _trajectory("t-2", "heldout", "Oslo"),
        ],
    )
    return path


def _city(messages: list[Message]) -> str:
    return (messages[0].content or "").removeprefix("Weather in ").rstrip("?")


def _answer_from_question(messages: list[Message], tools: list[Tool] | None) -> Completion:
    if messages[-1].role == "tool":
        return Completion(text=f"It is 18C in {_city(messages)}.")
    city = (messages[-1].content or "").removeprefix("Weather in ").rstrip("?")
    call = ToolCall(id="x", name="get_current_weather", arguments={"location": city})
    return Completion(tool_calls=[call])


def test_a_model_answering_right_passes_every_heldout_turn(tmp_path: Path) -> None:
    model = ScriptedChatModel(_answer_from_question)
    evaluated = EvalModel(model, "fc", "codec:hermes", "scripted")
    results = tmp_path / "turns.jsonl"
    summary = anyio.run(
        lambda: run_synthetic(evaluated, _data(tmp_path), results, SyntheticSettings())
    )
    assert summary["turns"] == 4 and summary["accuracy"] == 1.0
    assert summary["categories"]["single"]["call"]["passed"] == 2
    assert summary["categories"]["single"]["text"]["passed"] == 2
    assert all(m[-1].role in ("user", "tool") for m, _, _ in model.calls)  # history only
    asked = {(m[0].content or "") for m, _, _ in model.calls}
    assert "Weather in Rome?" not in asked  # train split is not evaluated
    assert len(results.read_text().splitlines()) == 4
    again = anyio.run(
        lambda: run_synthetic(evaluated, tmp_path / "verified.jsonl", results, SyntheticSettings())
    )
    assert again["turns"] == 4 and len(model.calls) == 4  # resumed: nothing asked twice


def test_wrong_arguments_fail_the_label_gate_and_text_fails_format(tmp_path: Path) -> None:
    def wrong(messages: list[Message], tools: list[Tool] | None) -> Completion:
        if messages[-1].role == "tool":
            return Completion(text="")
        return Completion(
            tool_calls=[ToolCall(id="x", name="get_current_weather", arguments={"location": "X"})]
        )

    evaluated = EvalModel(ScriptedChatModel(wrong), "fc", "codec:hermes", "wrong")
    summary = anyio.run(
        lambda: run_synthetic(evaluated, _data(tmp_path), tmp_path / "r.jsonl", SyntheticSettings())
    )
    assert summary["accuracy"] == 0.0
    assert summary["categories"]["single"]["call"]["failed_gates"] == {"label": 2}
    assert summary["categories"]["single"]["text"]["failed_gates"] == {"format": 2}
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert all(row["reason"] for row in rows)


def test_data_without_heldout_split_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    append_jsonl(path, [_trajectory("t", "train", "Rome")])
    evaluated = EvalModel(ScriptedChatModel([]), "fc", "codec:hermes", "m")
    with pytest.raises(ToolDojoError, match="no trajectory has split 'heldout'"):
        anyio.run(lambda: run_synthetic(evaluated, path, tmp_path / "r.jsonl", SyntheticSettings()))


def test_a_model_that_never_calls_scores_zero_on_call_turns(tmp_path: Path) -> None:
    """Answering in prose everywhere must not earn credit from the turns that need no call."""
    path = tmp_path / "verified.jsonl"
    refuse = Trajectory(
        id="t-r",
        category="irrelevance",
        split="heldout",
        tools=[WEATHER],
        messages=[
            Message(role="user", content="Write me a poem."),
            Message(role="assistant", content="I cannot: no tool here writes poems."),
        ],
        labels=[Label(kind="refuse")],
    )
    append_jsonl(path, [_trajectory("t-1", "heldout", "Paris"), refuse])
    prose = ScriptedChatModel(lambda m, t: Completion(text="Sorry, I cannot help with that."))
    evaluated = EvalModel(prose, "fc", "codec:hermes", "prose")
    summary = anyio.run(
        lambda: run_synthetic(evaluated, path, tmp_path / "r.jsonl", SyntheticSettings())
    )
    assert summary["accuracy"] == 0.0
    assert summary["kinds"]["call"] == {
        "accuracy": 0.0,
        "passed": 0,
        "total": 1,
        "failed_gates": {"format": 1},
    }
    assert summary["kinds"]["no_call"]["passed"] == 1  # scored apart, never pooled


def test_a_text_answer_that_does_not_do_its_job_fails_the_turns_checks(tmp_path: Path) -> None:
    """No call where none is due is not enough: a filler answer after the result, or an
    answer that quotes nothing of it, fails like it would fail verification's turns gate."""

    def filler(messages: list[Message], tools: list[Tool] | None) -> Completion:
        if messages[-1].role == "tool":
            return Completion(text="Done. Here is what I found:")
        return _answer_from_question(messages, tools)

    evaluated = EvalModel(ScriptedChatModel(filler), "fc", "codec:hermes", "filler")
    summary = anyio.run(
        lambda: run_synthetic(evaluated, _data(tmp_path), tmp_path / "r.jsonl", SyntheticSettings())
    )
    assert summary["kinds"]["call"]["passed"] == 2
    assert summary["kinds"]["text"]["passed"] == 0
    assert summary["kinds"]["text"]["failed_gates"] == {"turns": 2}
