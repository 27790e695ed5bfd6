"""The BFCL tool pack, served over MCP, must end every multi_turn_base entry in the same
environment state as BFCL's own executor (bfcl-eval's multi_turn_utils) on its ground truth."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import mcp
import pytest

from tooldojo.mcp.bfcl_pack import (
    bfcl_executor,
    bfcl_instances,
    bfcl_registry,
    parse_call_string,
)
from tooldojo.mcp.episodes import EPISODE_INIT_META_KEY, EPISODE_META_KEY
from tooldojo.mcp.server import ToolServer, result_value

multi_turn_utils = pytest.importorskip("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils")
multi_turn_checker = pytest.importorskip(
    "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker"
)


def _read_jsonl(relative: str) -> list[dict[str, Any]]:
    text = files("bfcl_eval").joinpath("data", relative).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _entries() -> list[tuple[dict[str, Any], list[list[str]]]]:
    questions = _read_jsonl("BFCL_v4_multi_turn_base.json")
    answers = {
        row["id"]: row["ground_truth"]
        for row in _read_jsonl("possible_answer/BFCL_v4_multi_turn_base.json")
    }
    return [(entry, answers[entry["id"]]) for entry in questions]


def _public_state(instance: Any) -> dict[str, Any]:
    return {key: value for key, value in vars(instance).items() if not key.startswith("_")}


@pytest.mark.anyio
async def test_bfcl_pack_reproduces_ground_truth_state_on_all_multi_turn_base() -> None:
    entries = _entries()
    assert len(entries) == 200
    servers: dict[tuple[str, ...], tuple[ToolServer, Any]] = {}
    compared_results = 0
    for entry, ground_truth in entries:
        classes = tuple(entry["involved_classes"])
        if classes not in servers:
            registry, executor = bfcl_registry(classes)
            servers[classes] = (ToolServer(registry), executor)
        server, executor = servers[classes]
        tools = {tool.name: tool for tool in registry_tools(server)}
        meta = {EPISODE_META_KEY: entry["id"], EPISODE_INIT_META_KEY: entry["initial_config"]}
        async with mcp.Client(server.server) as client:
            for turn in ground_truth:
                reference_results, reference = multi_turn_utils.execute_multi_turn_func_call(
                    turn,
                    entry["initial_config"],
                    list(classes),
                    model_name="tooldojo_mcp_test",
                    test_entry_id=entry["id"],
                )
                for call_text, reference_result in zip(turn, reference_results, strict=True):
                    name, arguments = parse_call_string(call_text, tools)
                    result = await client.call_tool(name, arguments, meta=meta)
                    if reference_result.startswith("Error during execution"):
                        assert result.is_error, (entry["id"], call_text, result)
                        continue
                    assert not result.is_error, (entry["id"], call_text, result.content)
                    try:
                        expected = json.loads(reference_result)
                    except ValueError:
                        continue  # BFCL str()-ed a non-dict; only the state is comparable
                    if isinstance(expected, dict):
                        assert result_value(result) == expected, (entry["id"], call_text)
                        compared_results += 1
        ours = bfcl_instances(executor, server.episodes.get(entry["id"]))
        for class_name, reference_instance in reference.items():
            if class_name not in ours:  # never called: compare against a fresh setup
                ours[class_name] = executor.instance(
                    type(reference_instance), server.episodes.get_or_create(entry["id"])
                )
            valid, differences = multi_turn_checker._compare_instances(
                ours[class_name], reference_instance
            )
            assert valid, (entry["id"], class_name, differences)
            assert _public_state(ours[class_name]) == _public_state(reference_instance)
        server.episodes.end(entry["id"])
    assert compared_results > 500  # the per-call results were checked too, not only states


def registry_tools(server: ToolServer) -> list[Any]:
    return server.registry.tools


def test_parse_call_string_binds_positional_arguments_by_signature_order() -> None:
    executor = bfcl_executor(["GorillaFileSystem"])
    tools = {tool.name: tool for tool in executor.tools}
    assert parse_call_string("sort('final_report.pdf')", tools) == (
        "sort",
        {"file_name": "final_report.pdf"},
    )
    assert parse_call_string("tail(file_name='log.txt',lines=20)", tools) == (
        "tail",
        {"file_name": "log.txt", "lines": 20},
    )
