"""Multi-turn BFCL: the model works turn by turn against BFCL's environments over MCP.

This follows BFCL's ``inference_multi_turn_FC`` / ``inference_multi_turn_prompting``
(``base_handler.py``): each user turn starts a loop of model steps; a step whose answer holds
no decodable call ends the turn; calls run in the entry's environments and their results go
back to the model (``tool`` messages in FC mode, one user message of BFCL's
``[{'role': 'tool', 'name': call, 'content': result}]`` repr in prompting mode); more than
``MAXIMUM_STEP_LIMIT`` (20) steps in a turn force-quit the entry. ``miss_func`` turns add the
held-out functions with BFCL's own user message.

The environments are served by tooldojo's MCP server with the BFCL tool pack
(:mod:`tooldojo.mcp.bfcl_pack`), one episode per entry set up from the entry's
``initial_config``. Results shown to the model are the server's text (JSON for dicts, as BFCL's
executor writes them). Scoring is separate: BFCL's ``multi_turn_checker`` replays the decoded
calls in fresh environments of its own.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import mcp
import mcp_types as types

from tooldojo.eval.bfcl_data import BFCLEntry
from tooldojo.eval.bfcl_modes import (
    bfcl_tools,
    decode_ast,
    decode_execute,
    decoded_to_calls,
    fc_raw_result,
    prompting_first_turn,
    to_messages,
)
from tooldojo.eval.models import EvalModel
from tooldojo.llm.base import SamplingParams
from tooldojo.mcp.bfcl_pack import bfcl_registry
from tooldojo.mcp.episodes import EPISODE_INIT_META_KEY, EPISODE_META_KEY
from tooldojo.mcp.server import ToolServer
from tooldojo.model import Message, ToolCall

Complete = Callable[[list[Message], Any], Awaitable[Any]]


class BFCLEnvironments:
    """One MCP server per set of environment classes; each entry runs in its own episode."""

    def __init__(self) -> None:
        self._servers: dict[tuple[tuple[str, ...], bool], ToolServer] = {}

    def server(self, entry: BFCLEntry) -> ToolServer:
        classes = tuple(entry.inference["involved_classes"])
        long_context = "long_context" in entry.category
        key = (classes, long_context)
        if key not in self._servers:
            registry, _ = bfcl_registry(classes, long_context=long_context)
            self._servers[key] = ToolServer(registry, name="bfcl-environments")
        return self._servers[key]


def _result_text(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _prompting_defaults() -> tuple[str, str, int]:
    from bfcl_eval.constants.default_prompts import (
        DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
        DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING,
        MAXIMUM_STEP_LIMIT,
    )

    return (
        DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
        DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING,
        MAXIMUM_STEP_LIMIT,
    )


async def run_multi_turn(
    entry: BFCLEntry,
    evaluated: EvalModel,
    sampling: SamplingParams,
    environments: BFCLEnvironments,
    usage: dict[str, float],
    max_steps: int | None = None,
) -> tuple[list[list[Any]], dict[str, Any]]:
    """Run one multi-turn entry; returns BFCL's raw result (per turn, per step) and a log."""
    fc_message, prompting_message, step_limit = _prompting_defaults()
    step_limit = max_steps if max_steps is not None else step_limit
    fc = evaluated.mode == "fc"
    functions = copy.deepcopy(entry.inference["function"])
    holdout: dict[str, list[dict[str, Any]]] = entry.inference.get("missed_function", {})
    tools = bfcl_tools(functions) if fc else None
    server = environments.server(entry)
    episode = f"{entry.id}:{uuid.uuid4().hex[:8]}"
    meta = {EPISODE_META_KEY: episode, EPISODE_INIT_META_KEY: entry.inference["initial_config"]}
    model = evaluated.for_entry(entry)
    messages: list[Message] = []
    raw_turns: list[list[Any]] = []
    force_quit = False
    try:
        async with mcp.Client(server.server) as client:
            for turn_index, turn in enumerate(entry.inference["question"]):
                if str(turn_index) in holdout:
                    added = holdout[str(turn_index)]
                    if fc:
                        functions.extend(added)
                        tools = bfcl_tools(functions)
                        turn = [{"role": "user", "content": fc_message}]
                    else:
                        turn = [
                            {"role": "user", "content": prompting_message.format(functions=added)}
                        ]
                if turn_index == 0 and not fc:
                    messages = prompting_first_turn(turn, functions, entry.id)
                else:
                    messages.extend(to_messages(turn))
                steps: list[Any] = []
                count = 0
                while True:
                    completion = await model.complete(messages, tools, sampling=sampling)
                    usage["prompt_tokens"] += completion.usage.prompt_tokens
                    usage["completion_tokens"] += completion.usage.completion_tokens
                    usage["model_calls"] += 1
                    raw = fc_raw_result(completion) if fc else completion.text
                    steps.append(raw)
                    try:
                        decoded = decode_ast(raw, evaluated.mode)
                        executable = decode_execute(raw, evaluated.mode)
                    except Exception:  # BFCL: undecodable answer ends the turn
                        decoded, executable = [], []
                    calls = decoded_to_calls(decoded)
                    if fc:
                        for index, call in enumerate(calls):
                            given = completion.tool_calls
                            call.id = (
                                given[index].id
                                if index < len(given) and given[index].id
                                else f"call_{count}_{index}"
                            )
                        messages.append(
                            Message(
                                role="assistant",
                                content=completion.text or None,
                                tool_calls=calls or None,
                            )
                        )
                    else:
                        messages.append(Message(role="assistant", content=completion.text))
                    if not calls or not executable or executable == [""]:
                        break
                    results = [
                        _result_text(await client.call_tool(call.name, call.arguments, meta=meta))
                        for call in calls
                    ]
                    messages.extend(_results_messages(calls, executable, results, fc))
                    count += 1
                    if count > step_limit:
                        force_quit = True
                        break
                raw_turns.append(steps)
                if force_quit:
                    break
    finally:
        server.episodes.end(episode)
    return raw_turns, {"force_quit": force_quit}


def _results_messages(
    calls: list[ToolCall], executable: list[str], results: list[str], fc: bool
) -> list[Message]:
    if fc:
        return [
            Message(role="tool", content=result, tool_call_id=call.id, name=call.name)
            for call, result in zip(calls, results, strict=True)
        ]
    # BFCL's format_execution_results_prompting: repr of a list of tool "messages".
    listing = [
        {"role": "tool", "name": name, "content": result}
        for name, result in zip(executable, results, strict=False)
    ]
    return [Message(role="user", content=repr(listing))]
