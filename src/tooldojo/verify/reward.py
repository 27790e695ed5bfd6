"""The gated reward for GRPO, as TRL reward functions and a verl ``compute_score``.

Formula (also in docs/verify.md)::

    R = 0                                  if the format gate fails: the completion does not
                                           parse, is empty, or is text where a call is expected
    for a ``call`` label (n expected calls, m calls made):
        s(c, e) = 0                        if c names another tool than e, else
                  0.2 + 0.3·K + 0.5·V
            D = keys given ∪ keys required (by the tool schema, or by the label: no "" allowed)
            K = |keys given that the label and schema allow| / |D|      (1 when D is empty)
            V = |allowed keys whose value passes BFCL's check| / |D|  (1 when D is empty)
        G = max over one-to-one pairings of Σ s(c, e)  /  max(n, m)
        R = 0.1 + 0.9·G
    for a ``text`` / ``clarify`` / ``refuse`` label:
        R = 0 if any call is made, or the text is empty, filler or carries code/call syntax
        R = 0.5 for a clarify turn that asks no question, or a refusal that gives no reason
        R = 1 otherwise (the checks of the turns gate that need no context)

Properties (property-tested): R ∈ [0, 1]; R = 1 exactly when every call passes BFCL's check
against a distinct expected call with equal counts (so any answer our label gate accepts
scores 1); unparseable output scores 0; making an argument value wrong never raises R (each
s is non-increasing in the set of correct values and the best pairing is a maximum over
sums of them); missing or extra calls are penalized by the ``max(n, m)`` denominator.
The 0.1 format credit rewards a parseable call over prose, which is what a model that never
calls tools must learn first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tooldojo.llm.codecs import DEFAULT_CODEC, ParseError
from tooldojo.model import Label, LabelCall, Tool, ToolCall
from tooldojo.verify._match import (
    ToolShape,
    check_param,
    match_calls,
    shape_from_label,
    shape_from_parameters,
)
from tooldojo.verify.content import FILLER, QUESTION, REASON_WORDS, code_in
from tooldojo.verify.format import TEXT_KINDS
from tooldojo.verify.turns import completion_turn

FORMAT_CREDIT = 0.1
NAME_WEIGHT, KEYS_WEIGHT, VALUES_WEIGHT = 0.2, 0.3, 0.5
_EXACT_PAIRING_LIMIT = 12
"""Above this many calls the best pairing is found greedily (2^m states otherwise)."""


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward and how it was reached (for logs and ``--explain``-style debugging)."""

    reward: float
    format_ok: bool
    match: float
    """G in the formula (1.0 for text labels answered with text)."""
    exact: bool
    """The answer passes the label gate (BFCL semantics)."""
    reason: str = ""


def call_score(shape: ToolShape, call: ToolCall, expected: LabelCall) -> float:
    """``s(c, e)`` of the formula: 1.0 exactly when BFCL's check of this call passes."""
    if call.name != expected.name:
        return 0.0
    allowed = {k for k in expected.arguments if k in shape.params}
    required = set(shape.required) | {k for k, v in expected.arguments.items() if "" not in v}
    given = set(call.arguments)
    considered = given | required
    if not considered:
        return 1.0
    good_keys = given & allowed
    good_values = 0
    for key in good_keys:
        try:
            ok = check_param(shape.params[key], call.arguments[key], expected.arguments[key])
        except (TypeError, AttributeError, KeyError, IndexError):
            ok = "malformed"
        good_values += ok is None
    return (
        NAME_WEIGHT
        + KEYS_WEIGHT * len(good_keys) / len(considered)
        + VALUES_WEIGHT * good_values / len(considered)
    )


def best_pairing(scores: list[list[float]]) -> float:
    """Maximum total score over one-to-one pairings of expected (rows) and made (cols) calls."""
    n = len(scores)
    m = len(scores[0]) if scores else 0
    if n == 0 or m == 0:
        return 0.0
    if m > _EXACT_PAIRING_LIMIT:
        used: set[int] = set()
        total = 0.0
        for row in scores:
            free = [j for j in range(m) if j not in used]
            if not free:
                break
            best = max(free, key=lambda j: row[j])
            used.add(best)
            total += row[best]
        return total
    # Exact: dynamic programming over subsets of made calls, row by row.
    best_by_mask = {0: 0.0}
    for row in scores:
        nxt: dict[int, float] = {}
        for mask, value in best_by_mask.items():
            nxt[mask] = max(nxt.get(mask, 0.0), value)  # leave this expected call unpaired
            for j in range(m):
                if not mask & (1 << j):
                    key = mask | (1 << j)
                    nxt[key] = max(nxt.get(key, 0.0), value + row[j])
        best_by_mask = nxt
    return max(best_by_mask.values())


def score_calls(
    calls: Sequence[ToolCall], expected: Sequence[LabelCall], shapes: Mapping[str, ToolShape]
) -> tuple[float, bool]:
    """``(G, exact)`` for calls against expected calls."""
    exact = match_calls([(c.name, c.arguments) for c in calls], expected, shapes) is None
    if exact:
        return 1.0, True
    if not expected and not calls:
        return 1.0, True
    matrix = [
        [call_score(shapes.get(e.name) or shape_from_label(e), c, e) for c in calls]
        for e in expected
    ]
    return best_pairing(matrix) / max(len(calls), len(expected)), False


def reward_breakdown(
    completion: Any,
    label: Label | Mapping[str, Any] | str | list[Any],
    tools: Any = None,
    codec: str = DEFAULT_CODEC,
) -> RewardBreakdown:
    """The gated reward of one completion (``str``, message dict/list) against ``label``."""
    label = as_label(label)
    shapes = shapes_from(tools)
    try:
        calls, text = completion_turn(completion, codec)
    except (ParseError, ValueError, KeyError, TypeError) as error:
        return RewardBreakdown(0.0, False, 0.0, False, f"unparseable: {error}")
    if label.kind in TEXT_KINDS:
        if calls:
            return RewardBreakdown(0.0, True, 0.0, False, f"{label.kind} expected, got a call")
        if not text.strip():
            return RewardBreakdown(0.0, False, 0.0, False, "empty answer")
        if FILLER.search(text) or code_in(text):
            return RewardBreakdown(0.0, True, 0.0, False, "filler or code instead of an answer")
        if (label.kind == "clarify" and not QUESTION.search(text)) or (
            label.kind == "refuse" and not REASON_WORDS.search(text)
        ):
            return RewardBreakdown(0.5, True, 0.5, False, f"{label.kind} without its substance")
        return RewardBreakdown(1.0, True, 1.0, True, "text answer as expected")
    if not calls:
        return RewardBreakdown(0.0, False, 0.0, False, "expected a tool call, got text")
    match, exact = score_calls(calls, label.calls, shapes)
    reward = FORMAT_CREDIT + (1.0 - FORMAT_CREDIT) * match
    return RewardBreakdown(reward, True, match, exact, "exact" if exact else "partial")


def gated_reward(
    completion: Any,
    label: Label | Mapping[str, Any] | str | list[Any],
    tools: Any = None,
    codec: str = DEFAULT_CODEC,
) -> float:
    """The reward number of :func:`reward_breakdown`."""
    return reward_breakdown(completion, label, tools, codec).reward


# --- inputs in the shapes datasets carry them --------------------------------------------


@lru_cache(maxsize=8192)
def _label_from_json(text: str) -> Label:
    return as_label(json.loads(text))


def as_label(value: Label | Mapping[str, Any] | str | list[Any]) -> Label:
    """A :class:`Label` from a Label, its dict/JSON, or BFCL ground truth ``[{"f": {...}}]``."""
    if isinstance(value, Label):
        return value
    if isinstance(value, str):
        return _label_from_json(value)
    if isinstance(value, list):
        return Label(kind="call", calls=[LabelCall.from_bfcl(item) for item in value])
    return Label.model_validate(dict(value))


@lru_cache(maxsize=4096)
def _shapes_from_json(text: str) -> dict[str, ToolShape]:
    return shapes_from(json.loads(text))


def shapes_from(tools: Any) -> dict[str, ToolShape]:
    """Shapes from Tools, OpenAI tool dicts, bare function dicts, or their JSON text."""
    if tools is None:
        return {}
    if isinstance(tools, str):
        return _shapes_from_json(tools) if tools.strip() else {}
    shapes: dict[str, ToolShape] = {}
    for tool in tools:
        if isinstance(tool, Tool):
            name, parameters = tool.name, tool.parameters
        else:
            function = tool.get("function", tool)
            name, parameters = function["name"], function.get("parameters") or {}
        shapes[name] = shape_from_parameters(name, parameters)
    return shapes


# --- TRL and verl entry points ---------------------------------------------------------


class ToolCallReward:
    """A TRL reward function: ``f(prompts, completions, completion_ids, **columns) -> floats``.

    TRL passes every other dataset column as a keyword list; this reads the label from
    ``label_column`` (a Label as JSON text or dict) and tool schemas from ``tools_column``
    (OpenAI tools as JSON text; optional). Completions may be strings or message lists.
    """

    def __init__(
        self,
        codec: str = DEFAULT_CODEC,
        label_column: str = "label",
        tools_column: str = "tools",
        name: str = "tool_call_reward",
    ):
        self.codec = codec
        self.label_column = label_column
        self.tools_column = tools_column
        self.__name__ = name

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Any] | None = None,
        **columns: Any,
    ) -> list[float]:
        if completions is None:
            raise TypeError("completions are required")
        labels = columns.get(self.label_column)
        if labels is None:
            raise KeyError(f"dataset has no {self.label_column!r} column for the reward")
        tools = columns.get(self.tools_column) or [None] * len(completions)
        codecs = columns.get("codec") or [self.codec] * len(completions)
        return [
            gated_reward(completion, label, tool_set, codec or self.codec)
            for completion, label, tool_set, codec in zip(
                completions, labels, tools, codecs, strict=True
            )
        ]


tool_call_reward = ToolCallReward()
"""Ready-made TRL reward function (Hermes codec, ``label`` and ``tools`` columns)."""


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
) -> float:
    """verl's custom reward signature; ``extra_info`` may carry ``tools`` and ``codec``."""
    extra_info = extra_info or {}
    return gated_reward(
        solution_str,
        ground_truth,
        extra_info.get("tools"),
        extra_info.get("codec") or DEFAULT_CODEC,
    )
