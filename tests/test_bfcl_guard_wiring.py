"""The BFCL content guard where data enters: synthesis tools (each of the three bypasses of the
old path check), user messages, training rows; ``refuse`` by default, ``warn`` on request."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from test_synth_orchestration import copying_user, oracle, request
from tooldojo.bfcl_guard import (
    BfclRefused,
    bfcl_data_dir,
    check_training_rows,
    guard_mode,
    row_id_of,
)
from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Message, Tool, Trajectory
from tooldojo.synth.pipeline import prepare_run, run_prepared

DATA, _ = bfcl_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="bfcl-eval is not installed")
MATH_API = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code.math_api:MathAPI"


def _models(user=copying_user) -> dict:  # type: ignore[no-untyped-def]
    return {
        "user": ScriptedChatModel(user, name="scripted-user"),
        "assistant": ScriptedChatModel(oracle, name="oracle"),
        "server": ScriptedChatModel(lambda messages, tools: "{}", name="scripted-server"),
    }


def _question(index: int) -> str:
    assert DATA is not None
    line = (DATA / "BFCL_v4_simple_python.json").read_text().splitlines()[index]
    return json.loads(line)["question"][0][0]["content"]


@pytest.mark.anyio
async def test_python_bfcl_eval_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BfclRefused, match="synthesis tools") as caught:
        await prepare_run(request(tmp_path, executor=f"python:{MATH_API}", models=_models()))
    assert caught.value.hits and not (tmp_path / "out" / "scenarios.jsonl").exists()


@pytest.mark.anyio
async def test_live_stdio_server_serving_bfcl_pack_is_refused(tmp_path: Path) -> None:
    """The tools arrive over MCP, named and described by the server: caught by content."""
    live = f"stdio:{sys.executable} -m tooldojo.cli serve --executor bfcl:MathAPI"
    with pytest.raises(BfclRefused) as caught:
        await prepare_run(request(tmp_path, specs=[live], executor="simulated", models=_models()))
    kinds = {hit.kind for hit in caught.value.hits}
    assert kinds <= {"tool_doc", "tool_name"} and len(caught.value.hits) >= 10


def _renamed_copy(tmp_path: Path) -> Path:
    assert DATA is not None
    entries = [json.loads(line) for line in (DATA / "BFCL_v4_multiple.json").open()][:15]
    for entry in entries:  # renamed file, renamed functions: only the content is BFCL's
        for function in entry["function"]:
            function["name"] = "helper_" + function["name"].replace(".", "_")
    copy = tmp_path / "geometry_helpers.json"
    copy.write_text("\n".join(json.dumps(entry) for entry in entries))
    return copy


@pytest.mark.anyio
async def test_renamed_copy_of_bfcl_data_is_refused(tmp_path: Path) -> None:
    copy = _renamed_copy(tmp_path)
    with pytest.raises(BfclRefused) as caught:
        await prepare_run(
            request(tmp_path, specs=[str(copy)], executor="simulated", models=_models())
        )
    assert {hit.kind for hit in caught.value.hits} == {"tool_doc"}


@pytest.mark.anyio
async def test_warn_mode_lists_each_copied_spec_tool_once(tmp_path: Path) -> None:
    copy = _renamed_copy(tmp_path)
    prepared = await prepare_run(
        request(
            tmp_path,
            n=2,
            specs=[str(copy)],
            executor="simulated",
            models=_models(),
            bfcl_guard="warn",
        )
    )
    subjects = [hit.subject for hit in prepared.bfcl_tool_hits]
    assert sorted(subjects) == sorted(tool.name for tool in prepared.tools)


@pytest.mark.anyio
async def test_warn_mode_runs_and_lists_the_hits_in_the_manifest(tmp_path: Path) -> None:
    prepared = await prepare_run(
        request(
            tmp_path,
            n=3,
            executor=f"python:{MATH_API}",
            models=_models(),
            bfcl_guard="warn",
            categories=["single"],
        )
    )
    await run_prepared(prepared)
    stage = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]["synth"]
    assert stage["bfcl_guard"]["mode"] == "warn"
    assert len(stage["bfcl_guard"]["hits"]) == len(prepared.tools) == stage["counts"]["bfcl_hits"]


@pytest.mark.anyio
async def test_user_messages_copying_bfcl_questions_are_refused(tmp_path: Path) -> None:
    def bfcl_user(messages, tools):  # type: ignore[no-untyped-def]
        return f"{copying_user(messages, tools)} Also: {_question(7)}"

    prepared = await prepare_run(request(tmp_path, n=4, models=_models(bfcl_user)))
    summary = await run_prepared(prepared)
    out = tmp_path / "out"
    assert list(iter_jsonl_dicts(out / "trajectories.jsonl")) == []
    dropped = [record for _, record in iter_jsonl_dicts(out / "dropped.jsonl")]
    planned = summary.total("planned")
    assert len(dropped) == planned and all("BFCL question" in r["reason"] for r in dropped)
    assert all(hit.bfcl_id.startswith("simple_python_7") for hit in summary.bfcl_hits)
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    hits = stage["bfcl_guard"]["hits"]  # one per user message (a clarify episode has two)
    assert stage["counts"]["bfcl_hits"] == len(hits) == len(summary.bfcl_hits) >= planned
    assert len({hit["detail"].split(":")[0] for hit in hits}) == planned


@pytest.mark.anyio
async def test_own_user_messages_pass(tmp_path: Path) -> None:
    prepared = await prepare_run(request(tmp_path, n=8))
    summary = await run_prepared(prepared)
    assert summary.bfcl_hits == [] and summary.total("finished") >= 6


def test_check_training_rows_finds_questions_and_tools_by_row() -> None:
    assert DATA is not None
    entry = json.loads((DATA / "BFCL_v4_simple_python.json").read_text().splitlines()[3])
    doc = entry["function"][0]
    doc["parameters"]["type"] = "object"
    clean = Trajectory(
        id="ours-1",
        messages=[Message(role="user", content="Please list my unread messages.")],
        tools=[Tool(name="list_messages", description="List the messages in the inbox.")],
    )
    question_row = clean.model_copy(
        update={"id": "ours-2", "messages": [Message(role="user", content=_question(3))]}
    )
    tool_row = {
        "id": "ours-3",
        "messages": [{"role": "user", "content": "hello"}],
        "tools": json.dumps([{"type": "function", "function": {**doc, "name": "renamed"}}]),
    }
    hits = check_training_rows([clean, question_row, tool_row])
    assert sorted(row_id_of(hit) for hit in hits) == ["ours-2", "ours-3"]
    assert {hit.kind for hit in hits} == {"question", "tool_doc"}
    assert check_training_rows([clean]) == []


def test_guard_mode_comes_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "tooldojo.yaml"
    assert guard_mode(path) == "refuse"  # absent file
    path.write_text("bfcl_guard: warn\n")
    assert guard_mode(path) == "warn"
    path.write_text("bfcl_guard: maybe\n")
    with pytest.raises(ToolDojoError, match="bfcl_guard"):
        guard_mode(path)
