"""The BFCL oracle: a scripted model that answers every entry with BFCL's own ground truth.

It checks the harness, not a model: feeding the ground truth back through the whole path
(prompt building, the backend interface, decoding, BFCL's checkers, multi-turn execution
through the MCP tool pack) must score 100 % apart from known quirks of the data. It is built
on :class:`~tooldojo.llm.scripted.ScriptedChatModel`, is told which entry it answers, and
answers in either mode: tool calls (``fc``) or BFCL's Python-call
text (``prompting``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tooldojo.eval.bfcl_data import BFCLEntry
from tooldojo.eval.bfcl_modes import bfcl_tools
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.mcp.bfcl_pack import parse_call_string
from tooldojo.model import Message, Tool, ToolCall

TOOL_RESULTS_PREFIX = "[{'role': 'tool'"
"""How BFCL's prompting mode hands execution results back (a user turn holding a repr list)."""
NO_CALL_TEXT = "I cannot do that with the functions available."


def _pick_value(values: list[Any], required: bool) -> tuple[bool, Any]:
    """(include?, value) from BFCL's acceptable values; ``""`` among them means "may omit".

    An omittable argument is left out unless the function doc marks it required (some
    entries allow omitting a required argument, some list values for one the doc lacks).
    """
    concrete = [value for value in values if value != ""]
    if not concrete or ("" in values and not required):
        return False, None
    return True, _materialize(concrete[0])


def _materialize(value: Any) -> Any:
    """Nested possible answers (``{"k": [v, ...]}`` inside a dict) become concrete values."""
    if isinstance(value, dict):
        out = {}
        for key, options in value.items():
            if isinstance(options, list):
                keep, chosen = _pick_value(options, required=False)
                if keep:
                    out[key] = chosen
            else:
                out[key] = options
        return out
    if isinstance(value, list):
        return [_materialize(item) for item in value]
    return value


def _quoted(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _java_source(value: Any, schema: dict[str, Any]) -> str:
    """A value as Java source text, the form BFCL's Java type converter reads back."""
    kind = schema.get("type", "String")
    nested = (schema.get("items") or {}).get("type", "String")
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "long":
        return f"{value}L"
    if kind == "float":
        return f"{value}f"
    if kind in ("ArrayList", "Array") and isinstance(value, list):
        if kind == "Array":  # BFCL reads array elements unquoted
            items = ", ".join(_java_source(v, {"type": nested}) for v in value)
            return f"new {nested}[]{{{items}}}"
        items = ", ".join(
            _quoted(v) if nested == "String" else _java_source(v, {"type": nested}) for v in value
        )
        return f"new ArrayList<>(Arrays.asList({items}))" if value else "new ArrayList<>()"
    if kind == "HashMap" and isinstance(value, dict):
        puts = " ".join(f'put("{k}", {_quoted(v)});' for k, v in value.items())
        return f"new HashMap<String, String>() {{{{ {puts} }}}}"
    return str(value)


def _js_source(value: Any, schema: dict[str, Any]) -> str:
    """A value as JavaScript source text, the form BFCL's JS type converter reads back."""
    kind = schema.get("type", "String")
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "Bigint":
        return f"{value}n"
    if isinstance(value, list):
        return "[" + ", ".join(_quoted(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_quoted(v)}" for k, v in value.items()) + "}"
    return str(value)


class _Oracle:
    def __init__(self) -> None:
        self.tools: dict[str, dict[str, Tool]] = {}

    def _tools_of(self, entry: BFCLEntry) -> dict[str, Tool]:
        if entry.id not in self.tools:
            functions = list(entry.inference["function"])
            for missed in entry.inference.get("missed_function", {}).values():
                functions.extend(missed)
            self.tools[entry.id] = {tool.name: tool for tool in bfcl_tools(functions)}
        return self.tools[entry.id]

    def respond(
        self, entry: BFCLEntry, messages: list[Message], tools: list[Tool] | None
    ) -> Completion:
        calls = self._answer(entry, messages)
        if not calls:
            return Completion(text=NO_CALL_TEXT, model="bfcl-oracle")
        if tools is not None:  # fc: BFCL offers sanitized names (math_factorial)
            for call in calls:
                call.name = re.sub(r"\.", "_", call.name)
            return Completion(tool_calls=calls, finish_reason="tool_calls", model="bfcl-oracle")
        text = "[" + ", ".join(_python_call(call) for call in calls) + "]"
        return Completion(text=text, model="bfcl-oracle")

    def _answer(self, entry: BFCLEntry, messages: list[Message]) -> list[ToolCall]:
        if entry.is_multi_turn:
            return self._multi_turn_answer(entry, messages)
        if "irrelevance" in entry.category:
            return []
        if entry.ground_truth is None:  # live_relevance: any call is right
            first = entry.inference["function"][0]["name"]
            return [ToolCall(id="call_0", name=first, arguments={})]
        docs = {function["name"]: function for function in entry.scoring["function"]}
        calls = []
        for index, expected in enumerate(entry.ground_truth):
            ((name, options),) = expected.items()
            parameters = docs.get(name, {}).get("parameters", {})
            required = set(parameters.get("required", []))
            properties = parameters.get("properties", {})
            arguments = {}
            for key, values in options.items():
                keep, value = _pick_value(values, key in required)
                if not keep:
                    continue
                schema = properties.get(key, {})
                if entry.language == "Java":
                    value = _java_source(value, schema)
                elif entry.language == "JavaScript":
                    value = _js_source(value, schema)
                arguments[key] = value
            calls.append(ToolCall(id=f"call_{index}", name=name, arguments=arguments))
        return calls

    def _multi_turn_answer(self, entry: BFCLEntry, messages: list[Message]) -> list[ToolCall]:
        last = messages[-1]
        if last.role == "tool" or (last.content or "").startswith(TOOL_RESULTS_PREFIX):
            return []  # the turn's calls have run: end the turn
        turn = sum(
            1
            for m in messages
            if m.role == "user" and not (m.content or "").startswith(TOOL_RESULTS_PREFIX)
        )
        expected = entry.ground_truth[turn - 1] if turn - 1 < len(entry.ground_truth) else []
        tools = self._tools_of(entry)
        calls = []
        for index, text in enumerate(expected):
            name, arguments = parse_call_string(text, tools)
            calls.append(ToolCall(id=f"call_{turn}_{index}", name=name, arguments=arguments))
        return calls


def _python_call(call: ToolCall) -> str:
    arguments = ", ".join(f"{key}={value!r}" for key, value in call.arguments.items())
    return f"{call.name}({arguments})"


def bfcl_oracle() -> Callable[[BFCLEntry], ScriptedChatModel]:
    """A factory of scripted models, each answering one entry with its ground truth.

    The harness tells the oracle which entry it is asked (``EvalModel.per_entry``): matching
    entries by their question would be ambiguous, since BFCL repeats questions across
    categories (even with contradicting labels, e.g. a live_irrelevance question that is
    answered with a call in live_multiple).
    """
    oracle = _Oracle()

    def for_entry(entry: BFCLEntry) -> ScriptedChatModel:
        return ScriptedChatModel(
            lambda messages, tools: oracle.respond(entry, messages, tools), name="bfcl-oracle"
        )

    return for_entry
