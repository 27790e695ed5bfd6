"""The data model's contracts and the crash-safe JSONL helpers."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tooldojo import (
    DataError,
    Label,
    LabelCall,
    Message,
    RunManifest,
    Tool,
    ToolCall,
    Trajectory,
    Verdict,
    append_jsonl,
    existing_ids,
    read_jsonl,
    write_jsonl_atomic,
)
from tooldojo.jsonl import drop_partial_tail


def make_trajectory(ident: str) -> Trajectory:
    tool = Tool(
        name="get_weather",
        description="Weather now",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})
    return Trajectory(
        id=ident,
        category="single",
        tools=[tool],
        messages=[
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="c1", name="get_weather", content='{"t": 21}'),
            Message(role="assistant", content="It is 21 degrees."),
        ],
        labels=[
            Label(calls=[LabelCall(name="get_weather", arguments={"city": ["Paris", "paris"]})]),
            Label(kind="text"),
        ],
        verdicts=[Verdict(gate="format", passed=True, score=1.0)],
    )


def test_tool_rejects_bad_names_and_non_object_parameters():
    with pytest.raises(ValidationError, match="does not match"):
        Tool(name="math.factorial")
    with pytest.raises(ValidationError, match='"type": "object"'):
        Tool(name="f", parameters={"type": "array"})
    assert Tool(name="a" * 64).name == "a" * 64
    with pytest.raises(ValidationError):
        Tool(name="a" * 65)


def test_tool_call_openai_round_trip_with_string_arguments():
    call = ToolCall(id="x", name="f", arguments={"a": [1, 2], "b": {"c": None}})
    wire = call.to_openai()
    assert isinstance(wire["function"]["arguments"], str)
    assert ToolCall.from_openai(wire) == call
    with pytest.raises(ValueError, match="JSON object"):
        ToolCall.from_openai({"function": {"name": "f", "arguments": "[1]"}})


def test_trajectory_round_trips_and_renders_openai_messages():
    trajectory = make_trajectory("t1")
    again = Trajectory.model_validate_json(trajectory.model_dump_json())
    assert again == trajectory
    messages = trajectory.openai_messages()
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2] == {
        "role": "tool",
        "content": '{"t": 21}',
        "tool_call_id": "c1",
        "name": "get_weather",
    }
    assert "is_error" not in messages[2]
    assert trajectory.labels[0].calls[0].to_bfcl() == {"get_weather": {"city": ["Paris", "paris"]}}
    assert LabelCall.from_bfcl({"f": {"x": [1]}}) == LabelCall(name="f", arguments={"x": [1]})


def test_manifest_stage_records():
    manifest = RunManifest(name="demo")
    manifest.stage("iter-000/synth").status = "done"
    loaded = RunManifest.model_validate_json(manifest.model_dump_json())
    assert loaded.stages["iter-000/synth"].status == "done"
    assert loaded.stage("iter-000/verify").status == "pending"


def test_append_and_read_stream_records(tmp_path):
    path = tmp_path / "runs" / "t.jsonl"
    assert append_jsonl(path, [make_trajectory("a"), make_trajectory("b")]) == 2
    append_jsonl(path, [{"id": "c", "category": "single"}])
    ids = [t.id for t in read_jsonl(path, Trajectory)]
    assert ids == ["a", "b", "c"]
    assert existing_ids(path) == {"a", "b", "c"}
    assert path.read_text().count("\n") == 3


def test_partial_tail_from_a_killed_writer_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, [make_trajectory("a")])
    whole = path.read_bytes()
    # A writer killed mid-line leaves a fragment without its newline.
    with path.open("ab") as handle:
        handle.write(b'{"id": "b", "messa')
    assert [t.id for t in read_jsonl(path, Trajectory)] == ["a"]
    assert existing_ids(path) == {"a"}
    append_jsonl(path, [make_trajectory("b")])
    assert [t.id for t in read_jsonl(path, Trajectory)] == ["a", "b"]
    assert path.read_bytes().startswith(whole)
    assert drop_partial_tail(path) == 0


def test_bad_record_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl at line 2: invalid JSON"):
        list(read_jsonl(path, Trajectory))
    path.write_text('{"id": "a", "category": "nonsense"}\n')
    with pytest.raises(DataError, match=r"line 1: category"):
        list(read_jsonl(path, Trajectory))


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    write_jsonl_atomic(path, [{"id": 1}, {"id": 2}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_public_api_reexports_stage_entry_points_lazily():
    import subprocess
    import sys

    code = (
        "import sys, tooldojo; assert 'torch' not in sys.modules and 'trl' not in sys.modules; "
        "names = [n for n in tooldojo.__all__ if not hasattr(tooldojo, n)]; assert not names, names"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
