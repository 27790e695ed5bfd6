"""Goal-conditioned guidance for the synthesis assistant.

The planner knows each step's label before the assistant speaks. How much of it reaches
the assistant is a choice:

- ``none``: plain role-play; the assistant's answer is recorded as it is and verification
  filters. Right for a capable assistant model (InfTool's setting).
- ``kind``: the assistant learns only *whether* this step calls a tool: a call step is
  decoded under a calls-only constraint (no text escape); other steps are unconstrained.
- ``label``: as ``kind``, and an answer that does not match the label (BFCL semantics) is
  replaced by the label's canonical answer — teacher forcing from the goal. A model that
  cannot call tools yet (the embedded 135M model calls none at first) still yields
  episodes whose user requests, tool results and follow-ups are real role-play, which is
  what a cold start needs. Every replaced step is counted and marked in the message
  (``guided: "label"``), so data made this way can be told apart.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

from tooldojo.llm.base import Completion
from tooldojo.model import Label, Message, Tool, ToolCall, Trajectory
from tooldojo.verify.label import (
    UnresolvedReference,
    calls_mismatch,
    resolved_label_calls,
    shapes_of,
)
from tooldojo.verify.turns import assistant_turns

PROTOCOL_MARKUP = re.compile(r"</?tool_(call|response)>")

Guidance = Literal["none", "kind", "label"]
GUIDANCE: tuple[str, ...] = Guidance.__args__  # type: ignore[attr-defined]


def first_value(possible: list[Any]) -> tuple[bool, Any]:
    """(present, value) of a BFCL possible-answer list: the first acceptable value, where
    ``""`` first means the argument is best omitted. Nested dicts are possible-answer maps."""
    if not possible or possible[0] == "":
        return False, None
    value = possible[0]
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        return True, {
            k: v for k, (present, v) in ((k, first_value(p)) for k, p in value.items()) if present
        }
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(item, dict) and all(isinstance(v, list) for v in item.values())
            for item in value
        )
    ):
        return True, [first_value([item])[1] for item in value]
    return True, value


def canonical_calls(label: Label, messages: list[Message], tools: list[Tool]) -> list[ToolCall]:
    """The label's calls with their first acceptable values (references resolved)."""
    turns = assistant_turns(Trajectory(id="guidance", tools=tools, messages=messages))
    calls = []
    for number, expected in enumerate(resolved_label_calls(label, turns, messages)):
        arguments = {}
        for name, possible in expected.arguments.items():
            present, value = first_value(possible)
            if present:
                arguments[name] = value
        calls.append(
            ToolCall(id=f"call_g{len(messages)}_{number}", name=expected.name, arguments=arguments)
        )
    return calls


def canonical_text(label: Label, messages: list[Message]) -> str:
    """A short, correct text answer for a step that must not call a tool."""
    if label.kind == "clarify":
        missing = ", ".join(label.missing) or "details"
        return f"I can do that. Could you tell me the {missing}?"
    if label.kind == "refuse":
        return "Sorry, none of the tools I have can help with that request."
    results = [m.content for m in messages if m.role == "tool" and m.content]
    return f"Done. Here is what I found: {results[-1][:300]}" if results else "Done."


def matches_label(
    completion: Completion, label: Label, messages: list[Message], tools: list[Tool]
) -> bool:
    if not completion.ok:
        return False
    if label.kind != "call":
        # Prose that imitates the tool protocol (a weak model echoing "<tool_response>" back)
        # is no answer: learning it would teach the model to impersonate the tools.
        text = completion.text.strip()
        return not completion.tool_calls and bool(text) and not PROTOCOL_MARKUP.search(text)
    turns = assistant_turns(Trajectory(id="guidance", tools=tools, messages=messages))
    try:
        expected = resolved_label_calls(label, turns, messages)
    except UnresolvedReference:
        return False
    return calls_mismatch(completion.tool_calls, expected, shapes_of(tools)) is None


class GuidanceStats:
    """How many steps the policy answered itself and how many the label supplied."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


def forced_completion(
    label: Label, messages: list[Message], tools: list[Tool], model: str
) -> Completion:
    """The label's canonical answer as a completion (text or calls)."""
    if label.kind == "call":
        return Completion(
            tool_calls=canonical_calls(label, messages, tools),
            finish_reason="tool_calls",
            model=f"label({model})",
        )
    return Completion(text=canonical_text(label, messages), model=f"label({model})")
