"""The format gate: every assistant turn parses into calls, or is text where text is expected."""

from __future__ import annotations

from tooldojo.model import Verdict, problem_details
from tooldojo.verify.turns import Turn

TEXT_KINDS = ("text", "clarify", "refuse")
"""Label kinds whose correct answer is text, not a call."""


def turn_format_problem(turn: Turn) -> tuple[str, str] | None:
    """``(code, message)`` of why one turn fails the format gate, or ``None`` when it passes;
    the code is one of ``parse_error``, ``text_for_call`` and ``empty_answer``."""
    if turn.parse_error is not None:
        return "parse_error", f"turn {turn.index}: {turn.parse_error}"
    if turn.calls:
        return None
    if turn.label is not None and turn.label.kind == "call":
        return "text_for_call", f"turn {turn.index}: expected a tool call, got text"
    if not turn.text.strip():
        return "empty_answer", f"turn {turn.index}: empty answer (no call, no text)"
    return None


def format_gate(turns: list[Turn]) -> Verdict:
    """Pass when every turn parses; the score is the fraction of turns that do. A failure's
    ``details`` hold the error lines and their codes (:func:`turn_format_problem`)."""
    if not turns:
        return Verdict(
            gate="format",
            passed=False,
            reason="no assistant turn",
            details=problem_details([("no_turn", "no assistant turn")]),
        )
    found = [problem for turn in turns if (problem := turn_format_problem(turn)) is not None]
    score = 1.0 - len(found) / len(turns)
    return Verdict(
        gate="format",
        passed=not found,
        score=score,
        reason="; ".join(m for _, m in found) if found else f"{len(turns)} turn(s) parse",
        details=problem_details(found),
    )
