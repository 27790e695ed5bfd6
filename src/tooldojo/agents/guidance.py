"""Goal-conditioned guidance for the synthesis assistant.

The planner knows each step's label before the assistant speaks. How much of it reaches
the assistant is a choice:

- ``none``: plain role-play; the assistant's answer is recorded as it is and verification
  filters. Right for a capable assistant model (InfTool's setting).
- ``kind``: the assistant learns only *whether* this step calls a tool: a call step is
  decoded under a calls-only constraint (no text escape); other steps are unconstrained.
- ``label``: as ``kind``, and a *call* that does not match the label (BFCL semantics) is
  replaced by the label's calls — teacher forcing from the goal. A model that cannot call
  tools yet (the embedded 135M model calls none at first) still yields episodes whose user
  requests, tool results and follow-ups are real role-play, which is what a cold start
  needs. Every replaced step is counted and marked (``origin="forced"``), so data made this
  way can be told apart.

Text steps (final answers, clarifying questions, refusals) are never filled in: a label says
*that* the assistant should answer in text, not *what* a good answer says, and a template
written in its place ("Done. Here is what I found: ...") is filler a model would learn to
repeat. Under guidance the model gets a hint of what the step is for and a few tries; an
answer that still fails the turn checks of :mod:`tooldojo.verify.content` is kept as the
model wrote it, so verification drops the trajectory.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Literal

from tooldojo.llm.base import Completion, Constraint
from tooldojo.model import Label, Message, Tool, ToolCall, Trajectory
from tooldojo.verify.content import turn_content_errors
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
    ``""`` first means the argument is best omitted. A dict of lists (or a list of such) is
    a possible-answer map one level deep, as labels write them
    (``synth.labels.possible_answers``); what its keys hold is taken literally. Why only one
    level: decoding deeper read a literal ``{"assetReturns": [56.2, 56.05]}`` as a choice
    between 56.2 and 56.05, and the forced call broke the tool's schema."""
    if not possible or possible[0] == "":
        return False, None
    value = possible[0]
    if _option_map(value):
        return True, _first_of_map(value)
    if isinstance(value, list) and value and all(_option_map(item) for item in value):
        return True, [_first_of_map(item) for item in value]
    return True, value


def _option_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())


def _first_of_map(option: dict[str, list[Any]]) -> dict[str, Any]:
    return {key: allowed[0] for key, allowed in option.items() if allowed and allowed[0] != ""}


def canonical_calls(label: Label, messages: list[Message], tools: list[Tool]) -> list[ToolCall]:
    """The label's calls with their first acceptable values (references resolved)."""
    turns = assistant_turns(Trajectory(id="guidance", tools=tools, messages=messages))
    calls = []
    for number, expected in enumerate(resolved_label_calls(label, turns, messages, tools)):
        arguments = {}
        for name, possible in expected.arguments.items():
            present, value = first_value(possible)
            if present:
                arguments[name] = value
        calls.append(
            ToolCall(id=f"call_g{len(messages)}_{number}", name=expected.name, arguments=arguments)
        )
    return calls


def step_hint(label: Label, tools: list[Tool]) -> str:
    """What a text step is for, told to the model for this step only (never recorded)."""
    if label.kind == "clarify":
        from tooldojo.agents.user import words

        missing = ", ".join(words(name) for name in label.missing) or "missing detail"
        return (
            f"Do not call a tool yet: the user has not given the {missing}. Ask them for it "
            "in one short question. Example: the user wants a table booked but gave no time; "
            'you answer "Happy to book it. What time would you like the table?"'
        )
    if label.kind == "refuse":
        return (
            "None of your tools can do what the user asks. Do not call a tool: say in one or "
            "two sentences that you cannot do it and why. Example: \"Sorry, I can't book "
            'flights: my tools only cover the calendar."'
        )
    return (
        "Answer the user now in one or two plain sentences that say what they asked about "
        "and quote the concrete values from the tool results (names, numbers, dates). No code, "
        "no JSON. If a tool call failed, say so. Example: the user asked for the weather in "
        'Oslo and the tool returned {"temp_c": 4, "sky": "snow"}; you answer "In Oslo it is '
        '4 degrees with snow right now."'
    )


EXAMPLE_WORDS = ("oslo",)
"""Words of :func:`step_hint`'s final-answer example that no real answer needs: an answer that
names one the conversation never did copied the example ("In Oslo it is iced with snow this
morning", 5 of 48 replayed answers written from ``assistant.answer_view``)."""


PROSE_CHARS = "A-Za-z0-9 .,:;'!?%$/()_-"
"""Plain prose characters: no braces, quotes or markup (the tool protocol cannot be echoed)."""

WORD = "[A-Za-z][A-Za-z'%$-]{0,14}[.,:;!]?"
"""One word of the model's own in a constrained answer: it starts with a letter, may end in
punctuation, and holds no digits and no ``/()_{}"<>``. Spans of such words, each followed by a
space (:func:`word_span`), are the free parts of every synthesis grammar. Why: with free
character classes the 135M model filled them with number and date dumps ("2025-06-18T14:00:00Z;
12.3.2.2; ...") and punctuation runs ("- - - -", ".m.m.m"), and wrote ``numpy.cov()``; the
value a grounded answer must quote is written as a literal, so it needs no digits."""


def word_span(low: int, high: int) -> str:
    """A pattern for ``low`` to ``high`` :data:`WORD` s, each followed by one space."""
    return f"({WORD} ){{{low},{high}}}"


def result_values(messages: list[Message]) -> list[str]:
    """Values the tool results since the last user message add (not said by the user, not
    call arguments), as text: what a grounded final answer should quote. Mirrors what the
    turns gate counts as grounding: when the results add nothing new (the reciprocal of 1 is
    1), any of their values grounds the answer, and a result that is not JSON ("nan") is one
    value. Results that failed are left out."""
    from tooldojo.agents.user import render_value
    from tooldojo.mcp.executors.result_checks import scalar_leaves
    from tooldojo.verify.content import _flags, grounding_leaves
    from tooldojo.verify.grounding import value_in

    request, results = "", []
    for message in reversed(messages):
        if message.role == "user":
            request = message.content or ""
            break
        if message.role == "tool" and not message.is_error:
            results.append(message)
    arguments = [
        leaf
        for m in messages
        for call in (m.tool_calls or [])
        for leaf in scalar_leaves(call.arguments)
    ]
    new: list[str] = []
    known: list[str] = []
    values = [_loaded((m.content or "").strip()) for m in reversed(results)]
    # as the turns gate reads them
    for leaf in grounding_leaves([leaf for value in values for leaf in scalar_leaves(value)]):
        text = render_value(leaf).strip()
        if isinstance(leaf, float) and value_in(f"{leaf:g}", leaf):
            text = f"{leaf:g}"  # 2.3333333333333335 is quoted as 2.33333, as people do
        if not text or len(text) > 40 or not re.fullmatch(f"[{PROSE_CHARS}]+", text):
            continue
        said = value_in(request, leaf) or any(leaf == a for a in arguments)
        target = known if said else new
        if text not in target:
            target.append(text)
    if not new and not known:  # only yes/no results: the flag, as the turns gate reads it
        flags = {flag for message in results for flag in _flags(_loaded(message.content or ""))}
        return ["true"] if flags == {True} else ["false"] if flags == {False} else []
    return new or known


def _loaded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _answer_matching(pattern: str) -> Constraint:
    """An ``{"answer": ...}`` object whose text matches ``pattern`` (decoded under a grammar)."""
    return Constraint(
        kind="json_schema",
        schema={
            "type": "object",
            "properties": {"answer": {"type": "string", "pattern": pattern}},
            "required": ["answer"],
        },
    )


def grounded_prose_constraint(value: str) -> Constraint:
    """A prose answer (words as :data:`WORD`) that must contain ``value`` after at least one
    word: the model still writes every other word and chooses where the value goes.
    Characters other than letters, digits and spaces are written as one-character classes,
    since llama.cpp's pattern converter mistranslates regex escapes."""
    literal = "".join(c if c.isalnum() or c == " " else f"[{c}]" for c in value)
    # The value stands as its own word (a space before, a space or punctuation after).
    pattern = f"^{word_span(1, 20)}{literal}[.,;:!?)%]?( {WORD}){{0,20}}[?]?$"
    return _answer_matching(pattern)


def clarify_constraint(label: Label) -> Constraint | None:
    """A clarifying question in plain prose that names the missing parameter (in words) and
    ends with a question mark; the model writes the rest. ``None`` without a missing name."""
    from tooldojo.agents.user import words

    names = [words(name) for name in label.missing if words(name)]
    if not names or not re.fullmatch(f"[{PROSE_CHARS}]+", names[0]):
        return None
    pattern = f"^{word_span(1, 16)}{names[0]}[,]?( {WORD}){{0,12}}[?]$"
    return _answer_matching(pattern)


def refuse_constraint() -> Constraint:
    """A refusal in plain prose that says it cannot help: an optional short opening of the
    model's choice ("Sorry,"), "I cannot" or "I can't", then at least a few words of its own
    (what it cannot do and why). Why: the 135M model, told to refuse, often echoed the
    request or an id ("Bk_7f3a9c"). No alternation (``a|b``): the llama.cpp backend drops
    patterns with it (``llm.llamacpp._plain_pattern``), so "cannot"/"can't" is spelled with
    character classes; a stray "cannt" fails the turns gate and is retried."""
    pattern = f"^{word_span(0, 4)}I can[n'][o]?t( {WORD}){{3,40}}$"
    return _answer_matching(pattern)


def text_problems(
    completion: Completion, label: Label, messages: list[Message], tools: list[Tool]
) -> list[str]:
    """Why a text completion is not a good answer for ``label`` (empty when it is)."""
    from tooldojo.verify.turns import Turn

    if not completion.ok:
        return [completion.error or "error"]
    if completion.tool_calls:
        return ["called a tool where a text answer was due"]
    text = completion.text.strip()
    if not text or PROTOCOL_MARKUP.search(text):
        return ["no answer" if not text else "imitates the tool protocol"]
    candidate = Message(role="assistant", content=text)
    trajectory = Trajectory(id="guidance", tools=tools, messages=[*messages, candidate])
    turn = Turn(index=0, message_index=len(messages), text=text, label=label)
    return [code for code, _ in turn_content_errors(turn, trajectory)]


def matches_label(
    completion: Completion, label: Label, messages: list[Message], tools: list[Tool]
) -> bool:
    if not completion.ok:
        return False
    if label.kind != "call":
        # Prose that imitates the tool protocol, filler, code, an answer that ignores the
        # results: none of it is an answer a model should learn.
        return not text_problems(completion, label, messages, tools)
    turns = assistant_turns(Trajectory(id="guidance", tools=tools, messages=messages))
    try:
        expected = resolved_label_calls(label, turns, messages, tools)
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
    """The label's calls as a completion (raises ``UnresolvedReference`` when a call refers
    to a result field that does not exist). Only call labels are forced."""
    if label.kind != "call":
        raise ValueError("only call steps are forced; text steps are the model's own")
    return Completion(
        tool_calls=canonical_calls(label, messages, tools),
        finish_reason="tool_calls",
        model=f"label({model})",
    )
