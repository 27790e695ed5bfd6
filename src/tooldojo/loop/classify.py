"""What kind of mistake a model made on one labelled turn.

The probe scores turns, the report breaks accuracy down by mistake, and error-driven expansion
(:mod:`tooldojo.loop.expand`) plans new scenarios that reproduce the same confusion. All three
need one vocabulary, decided by one pure function, :func:`classify_error`:

==========================  ==================================================================
``format``                  the answer did not parse, the backend failed, or a no-call turn
                            came back empty (there is nothing to score)
``called_when_should_not``  a call on a refuse/clarify turn, or more calls than the label asks
``no_call_when_should``     prose on a turn whose label is a call
``missed_parallel``         fewer calls than the label's several calls
``wrong_tool``              a call names a tool the label does not ask for
``missing_arg``             a required (or label-required) argument is left out
``extra_arg``               an argument the label does not allow
``wrong_value``             the right argument with a wrong value or type
``poor_answer``             no call on a refuse/clarify turn, but text that does not do the job
                            (the turns gate's checks: a refusal that says no reason, a question
                            that asks nothing or not for the missing parameter, filler, code,
                            word salad, a repeat); decided by the probe, which has the context
==========================  ==================================================================

The matching itself is verification's (BFCL semantics, :mod:`tooldojo.verify.label`), so a
turn is correct here exactly when the label gate would pass it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from tooldojo.model import Label, LabelCall, ToolCall
from tooldojo.verify._match import ToolShape, check_call, shape_from_label
from tooldojo.verify.label import calls_mismatch

ErrorClass = Literal[
    "wrong_tool",
    "missing_arg",
    "extra_arg",
    "wrong_value",
    "called_when_should_not",
    "no_call_when_should",
    "missed_parallel",
    "format",
    "poor_answer",
]
ERROR_CLASSES: tuple[str, ...] = ErrorClass.__args__  # type: ignore[attr-defined]

TurnKind = Literal["call", "no_call"]

_ARGUMENT_ERRORS: dict[str, ErrorClass] = {
    "missing_required": "missing_arg",
    "missing_optional": "missing_arg",
    "unexpected_param": "extra_arg",
}


def turn_kind(label: Label) -> TurnKind:
    """``call`` when the label expects calls; ``no_call`` for refuse, clarify and text."""
    return "call" if label.kind == "call" else "no_call"


def classify_error(
    label: Label,
    calls: Sequence[ToolCall],
    text: str,
    shapes: Mapping[str, ToolShape],
    *,
    parse_error: str | None = None,
    expected: Sequence[LabelCall] | None = None,
) -> ErrorClass | None:
    """The class of the model's mistake on this turn, or ``None`` when the answer is correct.

    ``expected`` is the label's calls with ``$result`` references already resolved (the
    label's own calls when omitted). A no-call turn passes here when the model made no call
    *and* wrote something (silence is never a right answer); whether the text does the job of
    a refusal or a clarifying question needs the conversation, so the caller checks that too
    (:func:`tooldojo.loop.probe.judge_answer`, class ``poor_answer``).
    """
    if parse_error:
        return "format"
    if label.kind != "call":
        if calls:
            return "called_when_should_not"
        return None if text.strip() else "format"
    wanted = list(label.calls if expected is None else expected)
    if not calls:
        return "no_call_when_should"
    if calls_mismatch(calls, wanted, shapes) is None:
        return None
    if len(calls) < len(wanted):
        return "missed_parallel"
    if len(calls) > len(wanted):
        return "called_when_should_not"
    return _pairwise_error(calls, wanted, shapes)


def _pairwise_error(
    calls: Sequence[ToolCall], wanted: Sequence[LabelCall], shapes: Mapping[str, ToolShape]
) -> ErrorClass:
    """Equal counts but no match: pair calls by tool name and name the first difference."""
    free = list(calls)
    found: list[ErrorClass] = []
    for want in wanted:
        same = [call for call in free if call.name == want.name]
        if not same:
            found.append("wrong_tool")
            continue
        shape = shapes.get(want.name) or shape_from_label(want)
        results = [
            (call, check_call(shape, call.name, call.arguments, want.arguments)) for call in same
        ]
        call, mismatch = next(((c, m) for c, m in results if m is None), results[0])
        free.remove(call)
        if mismatch is not None:
            found.append(_ARGUMENT_ERRORS.get(mismatch.error_type, "wrong_value"))
    # The greedy BFCL match can fail where a name-wise pairing does not; the mistake is then
    # in which call carries which values.
    return found[0] if found else "wrong_value"
