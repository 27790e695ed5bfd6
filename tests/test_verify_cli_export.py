"""``tooldojo verify`` (resume, funnel, --explain) and ``tooldojo export`` in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tooldojo.cli import app
from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, read_jsonl
from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify.export import export_trajectories
from tooldojo.verify.reward import compute_score

runner = CliRunner()

WEATHER = Tool(
    name="get_current_weather",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
)
LABEL = Label(
    kind="call",
    calls=[LabelCall(name="get_current_weather", arguments={"location": ["Paris"], "unit": [""]})],
)


def episode(trajectory_id: str, location: str, *, category: str = "single") -> Trajectory:
    call = ToolCall(id="call_1", name="get_current_weather", arguments={"location": location})
    return Trajectory(
        id=trajectory_id,
        category=category,
        tools=[WEATHER],
        messages=[
            Message(role="system", content="You are helpful."),
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="call_1", name=call.name, content='{"temp": 21}'),
            Message(role="assistant", content="It is 21 degrees in Paris."),
        ],
        labels=[LABEL, Label(kind="text")],
    )


@pytest.fixture
def trajectories(tmp_path: Path) -> Path:
    path = tmp_path / "trajectories.jsonl"
    prose = episode("prose", "Paris", category="parallel")
    prose.messages[2] = Message(role="assistant", content="Let me think about Paris.")
    append_jsonl(path, [episode("good", "Paris"), episode("wrong-city", "Lyon"), prose])
    return path


def test_verify_writes_verdicts_prints_funnel_and_resumes(trajectories: Path, tmp_path: Path):
    out = tmp_path / "verified.jsonl"
    result = runner.invoke(app, ["verify", str(trajectories), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = {t.id: t for t in read_jsonl(out, Trajectory)}
    assert {k: v.passed for k, v in records.items()} == {
        "good": True,
        "wrong-city": False,
        "prose": False,
    }
    assert [v.gate for v in records["wrong-city"].verdicts] == ["format", "schema", "label"]
    assert [v.gate for v in records["prose"].verdicts] == ["format"]
    assert "verification funnel" in result.output
    assert "verified 3 (1 passed)" in result.output
    # The funnel row for "all": 3 total, format 2/3 passed, label 1/2, 1 passed overall.
    all_row = next(line for line in result.output.splitlines() if "│ all" in line)
    cells = [c.strip() for c in all_row.split("│") if c.strip()]
    assert cells == ["all", "3", "2/3", "2/2", "1/2", "1/1", "1/1", "1/1", "1"]

    again = runner.invoke(app, ["verify", str(trajectories), "--out", str(out)])
    assert again.exit_code == 0
    assert "verified 0 (0 passed), skipped 3" in again.output
    assert len(out.read_text().splitlines()) == 3  # nothing duplicated


def test_verify_explain_names_the_failing_gate(trajectories: Path, tmp_path: Path) -> None:
    out = tmp_path / "verified.jsonl"
    result = runner.invoke(
        app, ["verify", str(trajectories), "--out", str(out), "--explain", "wrong-city"]
    )
    assert result.exit_code == 0, result.output
    assert "wrong-city" in result.output and "FAILED" in result.output
    assert "label" in result.output and "Lyon" in result.output
    assert not out.exists()  # explaining writes nothing
    missing = runner.invoke(
        app, ["verify", str(trajectories), "--out", str(out), "--explain", "nope"]
    )
    assert isinstance(missing.exception, ToolDojoError)


def test_verify_rejects_bad_gate_names_before_writing(trajectories: Path, tmp_path: Path):
    out = tmp_path / "verified.jsonl"
    result = runner.invoke(
        app, ["verify", str(trajectories), "--out", str(out), "--gates", "format,vibes"]
    )
    assert isinstance(result.exception, ToolDojoError)
    assert "unknown gate" in str(result.exception)
    assert not out.exists()


def test_export_all_formats(trajectories: Path, tmp_path: Path) -> None:
    verified = tmp_path / "verified.jsonl"
    assert runner.invoke(app, ["verify", str(trajectories), "--out", str(verified)]).exit_code == 0

    for fmt, name in [
        ("hf", "hf.parquet"),
        ("trl", "trl.parquet"),
        ("verl", "verl.parquet"),
        ("sharegpt", "sharegpt.json"),
    ]:
        result = runner.invoke(
            app, ["export", str(verified), "--format", fmt, "-o", str(tmp_path / name)]
        )
        assert result.exit_code == 0, (fmt, result.output)

    hf = pq.read_table(tmp_path / "hf.parquet").to_pylist()
    assert [row["id"] for row in hf] == ["good"]  # only passed trajectories
    assert json.loads(hf[0]["labels"])[0]["calls"][0]["name"] == "get_current_weather"

    trl = pq.read_table(tmp_path / "trl.parquet").to_pylist()[0]
    assert [m["role"] for m in trl["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    call = trl["messages"][2]["tool_calls"][0]["function"]
    assert json.loads(call["arguments"]) == {"location": "Paris"}
    assert json.loads(trl["tools"])[0]["function"]["name"] == "get_current_weather"

    share = json.loads((tmp_path / "sharegpt.json").read_text())[0]
    assert [c["from"] for c in share["conversations"]] == [
        "human",
        "function_call",
        "observation",
        "gpt",
    ]
    assert json.loads(share["conversations"][1]["value"]) == {
        "name": "get_current_weather",
        "arguments": {"location": "Paris"},
    }
    assert share["system"] == "You are helpful."

    verl = pq.read_table(tmp_path / "verl.parquet").to_pylist()
    assert [row["extra_info"]["turn"] for row in verl] == [0, 1]
    first = verl[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    # The exported ground truth scores a correct answer 1 through verl's entry point.
    answer = (
        '<tool_call>{"name": "get_current_weather", "arguments": {"location": "paris"}}</tool_call>'
    )
    truth = first["reward_model"]["ground_truth"]
    assert compute_score(first["data_source"], answer, truth, first["extra_info"]) == 1.0
    second = verl[1]
    assert "<tool_call>" in second["prompt"][2]["content"]  # earlier call rendered by codec
    assert compute_score("tooldojo", "Sunny.", second["reward_model"]["ground_truth"]) == 1.0


def test_export_fails_cleanly_and_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(ToolDojoError, match="nothing to export"):
        export_trajectories([episode("x", "Paris")], "hf", out)  # passed is None
    assert not out.exists()
    with pytest.raises(ToolDojoError, match="unknown export format"):
        export_trajectories([], "csv", out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "messages": "not a list"}\n')
    result = runner.invoke(app, ["export", str(bad), "--format", "trl", "-o", str(out)])
    assert isinstance(result.exception, ToolDojoError)
    assert "line 1" in str(result.exception)
    assert list(tmp_path.glob("*.parquet*")) == [] and list(tmp_path.glob(".*tmp*")) == []


def test_the_cli_default_gates_are_the_pipeline_defaults():
    from tooldojo.verify.cli import DEFAULT_GATES_OPTION
    from tooldojo.verify.pipeline import DEFAULT_GATES

    assert ",".join(DEFAULT_GATES) == DEFAULT_GATES_OPTION
