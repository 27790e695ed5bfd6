"""Pieces every backend shares: prompt rendering, the tool-call constraint, and answer mapping.

Kept in one place so the embedded, transformers and OpenAI-compatible backends agree exactly on
how tools are shown to a model without native tool support, what "text answer or calls" means
as a JSON Schema, and how a raw answer becomes a :class:`~tooldojo.llm.base.Completion`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from tooldojo.llm.base import Completion, Usage
from tooldojo.llm.codecs import ParseError, ToolCallCodec
from tooldojo.model import Message, Tool, ToolCall

ResultT = TypeVar("ResultT")


async def run_stoppable(work: Callable[[threading.Event], ResultT]) -> ResultT:
    """Run blocking ``work(stop_flag)`` in a worker thread; cancelling sets the flag and waits.

    The thread call is not abandoned on cancellation, so whatever the work holds (a model
    instance, its KV cache) is free again when this returns or raises; a watcher task turns the
    cancellation into the stop flag that the decoding loop checks after every token, so the
    wait is one token long.
    """
    stop_flag = threading.Event()
    result: list[ResultT] = []

    async def run() -> None:
        result.append(await anyio.to_thread.run_sync(work, stop_flag))
        group.cancel_scope.cancel()

    async def watch() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stop_flag.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        group.start_soon(watch)
    return result[0]


def new_call_id() -> str:
    """An id for a call whose format carries none (tool messages answer calls by id)."""
    return f"call_{uuid.uuid4().hex[:12]}"


def render_chat(
    messages: list[Message], tools: list[Tool] | None, codec: ToolCallCodec
) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` chat for a template without tool support.

    Tools go into the system prompt (appended to an existing system message); earlier calls are
    written back in the codec's format; tool results become a user turn of
    ``<tool_response>`` blocks (Hermes/Qwen convention), consecutive results merged into one.
    """
    chat: list[dict[str, str]] = []
    tool_text = codec.render(tools) if tools else ""
    for message in messages:
        content = message.content or ""
        if message.role == "system":
            if tool_text and not any(turn["role"] == "system" for turn in chat):
                content = f"{content}\n\n{tool_text}" if content else tool_text
            chat.append({"role": "system", "content": content})
        elif message.role == "assistant":
            if message.tool_calls:
                calls = codec.format_calls(message.tool_calls)
                content = f"{content}\n{calls}" if content else calls
            chat.append({"role": "assistant", "content": content})
        elif message.role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if chat and chat[-1].get("_tool_results") == "1":
                chat[-1]["content"] += "\n" + block
            else:
                chat.append({"role": "user", "content": block, "_tool_results": "1"})
        else:
            chat.append({"role": message.role, "content": content})
    if tool_text and not any(turn["role"] == "system" for turn in chat):
        chat.insert(0, {"role": "system", "content": tool_text})
    for turn in chat:
        turn.pop("_tool_results", None)
    return chat


def _hoist_defs(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Move a tool schema's ``$defs`` to the root under ``prefix`` and rewrite its refs.

    Each tool's parameters are a standalone schema whose ``#/$defs/X`` refs point at its own
    root; once embedded in one combined schema they must point at the combined root instead.
    """
    schema = copy.deepcopy(schema)
    local = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                for old in ("#/$defs/", "#/definitions/"):
                    if ref.startswith(old):
                        target = _safe_name(ref[len(old) :])
                        node = {**node, "$ref": f"#/$defs/{prefix}{target}"}
                if ref == "#":
                    node = {**node, "$ref": f"#/$defs/{prefix}"}
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for name, definition in local.items():
        defs[f"{prefix}{_safe_name(name)}"] = rewrite(definition)
    return rewrite(schema)


def _safe_name(name: str) -> str:
    """A ``$defs`` key made of ``[A-Za-z0-9-]``: grammar converters turn keys into rule names."""
    return re.sub(r"[^A-Za-z0-9-]", "-", name)


def call_schema(tools: list[Tool]) -> dict[str, Any]:
    """JSON Schema of ONE call to any of ``tools``: ``{"name": const, "arguments": params}``."""
    defs: dict[str, Any] = {}
    alternatives = []
    for index, tool in enumerate(tools):
        parameters = _hoist_defs(tool.parameters, f"t{index}-", defs)
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def tool_calls_document_schema(
    tools: list[Tool], *, allow_text: bool = True, max_calls: int | None = None
) -> dict[str, Any]:
    """One JSON document that is a text answer OR a list of calls, each matching one tool.

    ``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`` or ``{"answer": "..."}``; used
    where the constraint must be a JSON document (``response_format`` of vLLM/SGLang).
    """
    single = call_schema(tools)
    defs = single.pop("$defs", None)
    calls: dict[str, Any] = {"type": "array", "items": single, "minItems": 1}
    if max_calls is not None:
        calls["maxItems"] = max_calls
    call_branch = {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    text_branch = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    schema: dict[str, Any] = {"anyOf": [call_branch, text_branch]} if allow_text else call_branch
    if defs:
        schema["$defs"] = defs
    return schema


def completion_from_document(
    content: str, tools: list[Tool] | None, *, base: dict[str, Any]
) -> Completion:
    """Map an answer constrained by :func:`tool_calls_document_schema` back to a completion."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as error:
        return failed(content, f"constrained answer is not JSON ({error.msg})", base)
    if isinstance(value, dict) and isinstance(value.get("answer"), str):
        return Completion(text=value["answer"], **base)
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        try:
            calls = [_document_call(item) for item in value["tool_calls"]]
        except ValueError as error:
            return failed(content, str(error), base)
        return with_calls("", calls, tools, base)
    return failed(content, "constrained answer has neither 'answer' nor 'tool_calls'", base)


def _document_call(item: Any) -> ToolCall:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ValueError(f"malformed call in constrained answer: {item!r}")
    arguments = item.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments of {item['name']!r} must be a JSON object")
    return ToolCall(name=item["name"], arguments=arguments)


def completion_from_text(
    text: str, tools: list[Tool] | None, codec: ToolCallCodec, *, base: dict[str, Any]
) -> Completion:
    """Parse a free-text answer with ``codec``; malformed or unknown calls become a failure."""
    try:
        calls = codec.parse(text) if tools else []
    except ParseError as error:
        return failed(text, str(error), base)
    if not calls:
        return Completion(text=text.strip(), **base)
    prose = text.split("<tool_call>", 1)[0].strip() if codec.name == "hermes" else ""
    return with_calls(prose, calls, tools, base)


def with_calls(
    text: str, calls: list[ToolCall], tools: list[Tool] | None, base: dict[str, Any]
) -> Completion:
    """A completion carrying ``calls``, or a failure if one names a tool that was not offered."""
    offered = {tool.name for tool in tools or []}
    unknown = [call.name for call in calls if call.name not in offered]
    if unknown:
        shown = json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls])
        return failed(shown, f"unknown tool {unknown[0]!r} (offered: {sorted(offered)})", base)
    for call in calls:
        if not call.id:
            call.id = new_call_id()
    fields = {**base}
    if fields.get("finish_reason", "stop") == "stop":
        fields["finish_reason"] = "tool_calls"
    return Completion(text=text, tool_calls=calls, **fields)


def failed(raw: str, error: str, base: dict[str, Any]) -> Completion:
    """A typed failure: the raw answer kept in ``text``, the reason in ``error``."""
    if base.get("finish_reason") == "length":
        error = f"{error} (the answer was cut off at max_tokens or in a repetition loop)"
    fields = {**base, "finish_reason": "error"}
    return Completion(text=raw, error=error, **fields)


def base_fields(
    *, model: str, finish_reason: str, prompt_tokens: int, completion_tokens: int, latency_s: float
) -> dict[str, Any]:
    """The bookkeeping part of a completion, shared by its success and failure forms."""
    return {
        "model": model,
        "finish_reason": finish_reason,
        "usage": Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        "latency_s": latency_s,
    }
