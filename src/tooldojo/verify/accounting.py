"""Honest accounting: who wrote the turns of a data set, and why trajectories failed.

Every message a synthesis episode writes carries ``Message.origin``: ``model`` (the role's
model wrote it freely), ``forced`` (copied from the planned label), ``template`` (filled from
a template) or ``executed`` (a tool result). :func:`accounting` sums them per role, the form
``iter-NNN/accounting.json`` holds; :func:`gate_failures` counts failed trajectories by the
gate and reason that stopped them, for the verify summary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tooldojo.model import ORIGINS, Trajectory

_CODE = re.compile(r"^turn \d+: ([a-z_]+)(:[a-z_]+)?: ")


def _code(error: str, gate: str) -> str:
    """A reason code from a gate's error line ("turn 1: value_error:string: ..." → the
    BFCL error type), else the gate's name."""
    match = _CODE.match(error)
    return match.group(1) + (match.group(2) or "") if match else gate


ROLES = ("user", "assistant", "tool")


def message_origins(trajectory: Trajectory) -> dict[str, dict[str, int]]:
    """``{role: {origin: n}}`` over one trajectory (messages without an origin: ``unknown``)."""
    out: dict[str, dict[str, int]] = {}
    for message in trajectory.messages:
        if message.role not in ROLES:
            continue
        slot = out.setdefault(message.role, dict.fromkeys(ORIGINS, 0))
        origin = getattr(message, "origin", None) or "unknown"
        slot[origin] = slot.get(origin, 0) + 1
    return out


def accounting(trajectories: Iterable[Trajectory]) -> dict[str, Any]:
    """Per role, how many turns each origin produced, and their shares.

    ``{role: {"model": n, "forced": n, "template": n, "executed": n, "unknown": n?,
    "shares": {origin: fraction}}}`` plus ``"trajectories"`` and ``"templated_trajectories"``
    (those with at least one templated user turn: the quantity the template cap bounds).
    """
    totals: dict[str, Counter[str]] = {role: Counter() for role in ROLES}
    count = templated = 0
    for trajectory in trajectories:
        count += 1
        origins = message_origins(trajectory)
        for role, slot in origins.items():
            totals[role].update({k: v for k, v in slot.items() if v})
        if origins.get("user", {}).get("template"):
            templated += 1
    out: dict[str, Any] = {}
    for role in ROLES:
        slot = {origin: totals[role].get(origin, 0) for origin in ORIGINS}
        if totals[role].get("unknown"):
            slot["unknown"] = totals[role]["unknown"]
        turns = sum(slot.values())
        out[role] = slot | {
            "shares": {k: round(v / turns, 4) for k, v in slot.items()} if turns else {}
        }
    out["trajectories"] = count
    out["templated_trajectories"] = templated
    return out


def gate_failures(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, int]]:
    """``{gate: {reason: n}}`` over failed trajectories: the gate that stopped each one and
    the reason codes it gave (the gate's name when it gives none)."""
    out: dict[str, Counter[str]] = {}
    for trajectory in trajectories:
        if trajectory.passed or not trajectory.verdicts:
            continue
        verdict = trajectory.verdicts[-1]
        if verdict.passed:
            continue
        reasons = (
            verdict.details.get("reasons")
            or [_code(error, verdict.gate) for error in verdict.details.get("errors", [])]
            or [verdict.gate]
        )
        out.setdefault(verdict.gate, Counter()).update(set(reasons))
    return {gate: dict(counter.most_common()) for gate, counter in out.items()}


def _user_text(trajectory: Trajectory, index: int) -> str:
    return "\n".join(m.content or "" for m in trajectory.messages[:index] if m.role == "user")


def _user_text(trajectory: Trajectory, index: int) -> str:
    return "\n".join(m.content or "" for m in trajectory.messages[:index] if m.role == "user")


def grounded_share(trajectories: Iterable[Trajectory]) -> dict[str, Any]:
    """Among trajectories with at least one call label, the share whose user messages state
    or imply every value the labels expect (the request gate's independent grounding check,
    run on all of them, whatever gate stopped them)."""
    from tooldojo.verify.requests import ungrounded_values
    from tooldojo.verify.turns import assistant_turns

    checked = grounded = 0
    for trajectory in trajectories:
        turns = [t for t in assistant_turns(trajectory) if t.label and t.label.kind == "call"]
        if not turns:
            continue
        checked += 1
        grounded += all(
            not ungrounded_values(t.label, _user_text(trajectory, t.message_index)) for t in turns
        )
    return {
        "checked": checked,
        "grounded": grounded,
        "share": round(grounded / checked, 4) if checked else None,
    }
