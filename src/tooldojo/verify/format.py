"""The format gate: every assistant turn parses into calls, or is text where text is expected."""

from __future__ import annotations

from tooldojo.model import Verdict
from tooldojo.verify.turns import Turn

TEXT_KINDS = ("text", "clarify", "refuse")
"""Label kinds whose correct answer is text, not a call."""


def turn_format_error(turn: Turn) -> str | None:
    """Why one turn fails the format gate, or ``None`` when it passes."""
    if turn.parse_error is not None:
        return f"turn {turn.index}: {turn.parse_error}"
    if turn.calls:
        return None
    if turn.label is not None and turn.label.kind == "call":
        return f"turn {turn.index}: expected a tool call, got text"
    if not turn.text.strip():
        return f"turn {turn.index}: empty answer (no call, no text)"
    return None


def format_gate(turns: list[Turn]) -> Verdict:
    """Pass when every turn parses; the score is the fraction of turns that do."""
    if not turns:
        return Verdict(gate="format", passed=False, reason="no assistant turn")
    errors = [error for turn in turns if (error := turn_format_error(turn)) is not None]
    score = 1.0 - len(errors) / len(turns)
    return Verdict(
        gate="format",
        passed=not errors,
        score=score,
        reason="; ".join(errors) if errors else f"{len(turns)} turn(s) parse",
        details={"errors": errors} if errors else {},
    )
