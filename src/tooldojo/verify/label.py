"""The label gate: each assistant turn's calls match its label with BFCL semantics.

``call`` labels are matched by :func:`tooldojo.verify._match.match_calls` (BFCL's official
rules, order-free, exact count); ``text``/``clarify``/``refuse`` labels pass only when no call
was made (BFCL's irrelevance rule). Multi-step labels may refer to an earlier tool result with
``{"$result": {"step": i, "call": j, "pointer": "/a/b"}}``; such references are resolved
against the trajectory's recorded tool messages before matching, and the value is read in the
parameter's type where that loses nothing (:func:`coerce_to_schema`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tooldojo.model import (
    RESULT_REF_KEY,
    Label,
    LabelCall,
    Message,
    Tool,
    ToolCall,
    Verdict,
    problem_details,
)
from tooldojo.verify._match import Mismatch, ToolShape, match_calls, shape_of
from tooldojo.verify.turns import Turn


class UnresolvedReference(Exception):
    """A ``$result`` reference that points at no recorded result."""


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer lookup (tiny, so no extra dependency for it)."""
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise UnresolvedReference(f"pointer {pointer!r} must start with '/'")
    value = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise UnresolvedReference(f"pointer {pointer!r} not found in result")
    return value


def _result_of(turns: Sequence[Turn], messages: Sequence[Message], step: int, call: int) -> Any:
    if not 0 <= step < len(turns) or not 0 <= call < len(turns[step].calls):
        raise UnresolvedReference(f"no call {call} at step {step}")
    turn = turns[step]
    wanted = turns[step].calls[call].id
    answers = [m for m in messages[turn.message_index + 1 :] if m.role == "tool"]
    # Prefer the tool_call_id link; fall back to position when calls carry no ids.
    match = next((m for m in answers if wanted and m.tool_call_id == wanted), None)
    if match is None and not wanted and call < len(answers):
        match = answers[call]
    if match is None:
        raise UnresolvedReference(f"no recorded result for call {call} at step {step}")
    try:
        return json.loads(match.content or "")
    except json.JSONDecodeError:
        return match.content


def resolve_references(value: Any, turns: Sequence[Turn], messages: Sequence[Message]) -> Any:
    """``value`` with every ``{"$result": ...}`` replaced by the result field it names."""
    if isinstance(value, dict):
        if set(value) == {RESULT_REF_KEY} and isinstance(value[RESULT_REF_KEY], dict):
            ref = value[RESULT_REF_KEY]
            result = _result_of(turns, messages, int(ref.get("step", -1)), int(ref.get("call", 0)))
            return resolve_pointer(result, str(ref.get("pointer", "")))
        return {k: resolve_references(v, turns, messages) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, turns, messages) for v in value]
    return value


def _has_reference(value: Any) -> bool:
    if isinstance(value, dict):
        return RESULT_REF_KEY in value or any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return False


_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
"""JSON's own spelling of a number: a string that reads back unchanged under ``json.loads``."""


def _json_types(schema: Any) -> set[str]:
    """The JSON types a parameter's schema allows (``type`` only; empty: unknown or any)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


def coerce_to_schema(value: Any, schema: Any) -> Any:
    """``value`` in the parameter's JSON type where that loses nothing, else ``value`` itself.

    Why: a ``$result`` reference copies a field of a tool result as the result wrote it, and
    a simulated tool writes ``"50"`` where the next tool takes an integer; the forced call
    then failed the schema gate (54 of 376 multi_step trajectories in a 2,400-episode run).
    Only spellings of the same value convert (``"50"`` → 50, ``"2.5"`` → 2.5, ``"true"`` →
    True, 50 → ``"50"`` for a string); anything else (``");"`` for an integer) is left as it
    is, so the schema gate still fails it: a value is never invented.
    """
    types = _json_types(schema)
    if not types or _fits(value, types):
        return value
    if isinstance(value, str):
        text = value.strip()
        if "integer" in types and _INTEGER.fullmatch(text):
            return int(text)
        if "number" in types and _NUMBER.fullmatch(text):
            number = json.loads(text)
            return number if isinstance(number, int) or math.isfinite(number) else value
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
    elif isinstance(value, float) and "integer" in types and value.is_integer():
        return int(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and "string" in types:
        return json.dumps(value)
    return value


def _fits(value: Any, types: set[str]) -> bool:
    """Whether ``value`` already has one of the JSON ``types`` (50.0 is not an integer here,
    as in BFCL's checker, though JSON Schema would take it)."""
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types
    names = {str: "string", list: "array", dict: "object", type(None): "null"}
    return names.get(type(value)) in types


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {RESULT_REF_KEY}


def _resolved_values(
    possible: Any, schema: Any, turns: Sequence[Turn], messages: Sequence[Message]
) -> Any:
    """One argument's acceptable values with references resolved; a value that *is* a
    reference is coerced to the parameter's type (a nested one is a literal's part, and the
    label's own literals already have their types)."""
    if not isinstance(possible, list):
        return resolve_references(possible, turns, messages)
    return [
        coerce_to_schema(resolve_references(value, turns, messages), schema)
        if _is_reference(value)
        else resolve_references(value, turns, messages)
        for value in possible
    ]


def resolved_label_calls(
    label: Label, turns: Sequence[Turn], messages: Sequence[Message], tools: Sequence[Tool]
) -> list[LabelCall]:
    """The label's calls with result references resolved (unchanged objects when none).

    A resolved value is coerced to its parameter's type in ``tools`` where lossless (see
    :func:`coerce_to_schema`), so the call the label stands for is one the tool accepts.
    """
    properties = {tool.name: tool.properties for tool in tools}
    out = []
    for call in label.calls:
        if _has_reference(call.arguments):
            schemas = properties.get(call.name, {})
            arguments = {
                name: _resolved_values(possible, schemas.get(name), turns, messages)
                for name, possible in call.arguments.items()
            }
            call = LabelCall(name=call.name, arguments=arguments)
        out.append(call)
    return out


def shapes_of(tools: Sequence[Tool]) -> dict[str, ToolShape]:
    return {tool.name: shape_of(tool) for tool in tools}


def calls_mismatch(
    calls: Sequence[ToolCall], expected: Sequence[LabelCall], shapes: Mapping[str, ToolShape]
) -> Mismatch | None:
    """BFCL-semantics comparison of made calls with expected calls (``None`` = match)."""
    return match_calls([(c.name, c.arguments) for c in calls], expected, shapes)


def turn_label_problem(
    turn: Turn,
    shapes: Mapping[str, ToolShape],
    turns: Sequence[Turn],
    messages: Sequence[Message],
    tools: Sequence[Tool],
) -> tuple[str, str] | None:
    """``(code, message)`` of why one turn does not match its label, or ``None`` (``tools``
    type the values that ``$result`` references resolve to). The code is BFCL's error type for
    a call mismatch, else ``calls_without_label``, ``expected_no_call`` or
    ``unresolved_reference``."""
    label = turn.label
    if label is None:
        if turn.calls:
            return "calls_without_label", f"turn {turn.index}: calls made but no label"
        return None
    if label.kind != "call":
        if turn.calls:
            names = ", ".join(c.name for c in turn.calls)
            message = f"turn {turn.index}: expected no call ({label.kind}), got {names}"
            return "expected_no_call", message
        return None
    try:
        expected = resolved_label_calls(label, turns, messages, tools)
    except UnresolvedReference as error:
        return "unresolved_reference", f"turn {turn.index}: label reference unresolved: {error}"
    mismatch = calls_mismatch(turn.calls, expected, shapes)
    if mismatch is None:
        return None
    return mismatch.error_type, f"turn {turn.index}: {mismatch.error_type}: {mismatch.message}"


def label_gate(
    turns: list[Turn], tools: Sequence[Tool], labels: Sequence[Label], messages: Sequence[Message]
) -> Verdict:
    """Pass when every assistant turn matches its label and every label has a turn. A
    failure's ``details`` hold the error lines and their codes (:func:`turn_label_problem`;
    ``missing_turns`` when labels outnumber the turns)."""
    shapes = shapes_of(tools)
    found = [
        problem
        for turn in turns
        if (problem := turn_label_problem(turn, shapes, turns, messages, tools)) is not None
    ]
    if len(labels) > len(turns):
        found.append(
            ("missing_turns", f"{len(labels)} labels but only {len(turns)} assistant turn(s)")
        )
    errors = [message for _, message in found]
    # Forced turns match by construction: the score is over the turns the model wrote.
    forced = sum(1 for turn in turns if turn.origin == "forced")
    total = max(len(turns) - forced, len(labels) - forced, 1)
    details: dict = problem_details(found)
    if forced:
        details["forced_turns"] = forced
    matched = f"{len(turns)} turn(s) match their labels"
    return Verdict(
        gate="label",
        passed=not errors,
        score=max(0.0, 1.0 - len(errors) / total),
        reason="; ".join(errors) if errors else matched + (f" ({forced} forced)" if forced else ""),
        details=details,
    )
