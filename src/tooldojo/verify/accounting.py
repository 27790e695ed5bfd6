"""Honest accounting: who wrote the turns of a data set, and why trajectories failed.

Every message a synthesis episode writes carries ``Message.origin``: ``model`` (the role's
model wrote it freely), ``forced`` (copied from the planned label), ``template`` (filled from
a template) or ``executed`` (a tool result). :func:`count_origins` sums them per role, the form
``iter-NNN/accounting.json`` holds, and :func:`accounting` adds shares: the one implementation
that synthesis, ``tooldojo verify`` and the loop all count through. :func:`gate_failures`
counts failed trajectories by the gate and reason that stopped them, for the verify summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tooldojo.model import ORIGINS, Message, Trajectory

ROLES = ("user", "assistant", "tool")
"""Accounting roles are message roles: ``tool`` holds the tool results, whether the MCP
server's model simulated them (origin ``model``) or a real call produced them (``executed``)."""

LEGACY_ROLES = {"server": "tool"}
"""Role names older run directories used (the loop once called the tool role ``server``)."""


def normalize_roles(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` (``{role: ...}``, as read from an older file) with today's role names."""
    return {LEGACY_ROLES.get(role, role): value for role, value in table.items()}


def message_origin(message: Message, user_source: str | None = None) -> str:
    """Who wrote ``message`` of a synthesis episode: ``message.origin``, or, for episodes
    written before ``origin`` existed, what their older marks say: ``guided`` → forced, a user
    source naming a template (``user_source``) → template, a tool result → executed, else
    model."""
    origin = getattr(message, "origin", None)
    if origin in ORIGINS:
        return origin
    if message.role == "assistant":
        return "forced" if getattr(message, "guided", None) else "model"
    if message.role == "user":
        return "template" if user_source and "template" in user_source else "model"
    return "executed"


def trajectory_origins(trajectory: Trajectory) -> Iterator[tuple[Message, str]]:
    """Each user, assistant and tool message of ``trajectory`` with its origin.

    A trajectory of a synthesis episode (its metadata holds ``user_sources``, which episodes
    have always written) falls back on :func:`message_origin`'s older marks, so run
    directories from before ``Message.origin`` still count; a message of any other trajectory
    that carries no origin is ``unknown``: nothing says who wrote it.
    """
    sources = trajectory.metadata.get("user_sources")
    legacy = sources is not None
    sources = list(sources or [])
    users = 0
    for message in trajectory.messages:
        if message.role not in ROLES:
            continue
        source = None
        if message.role == "user":
            source = str(sources[users]) if users < len(sources) else None
            users += 1
        origin = getattr(message, "origin", None)
        if origin not in ORIGINS:
            origin = message_origin(message, source) if legacy else "unknown"
        yield message, origin


def message_origins(trajectory: Trajectory) -> dict[str, dict[str, int]]:
    """``{role: {origin: n}}`` over one trajectory, only the roles present."""
    out: dict[str, dict[str, int]] = {}
    for message, origin in trajectory_origins(trajectory):
        slot = out.setdefault(message.role, dict.fromkeys(ORIGINS, 0))
        slot[origin] = slot.get(origin, 0) + 1
    return out


def count_origins(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, int]]:
    """``{role: {origin: n}}`` for every role over ``trajectories``: the form
    ``iter-NNN/accounting.json`` holds (``unknown`` only where some message had no origin)."""
    totals: dict[str, Counter[str]] = {role: Counter() for role in ROLES}
    for trajectory in trajectories:
        for message, origin in trajectory_origins(trajectory):
            totals[message.role][origin] += 1
    out: dict[str, dict[str, int]] = {}
    for role in ROLES:
        out[role] = {origin: totals[role][origin] for origin in ORIGINS}
        if totals[role]["unknown"]:
            out[role]["unknown"] = totals[role]["unknown"]
    return out


def accounting(trajectories: Iterable[Trajectory]) -> dict[str, Any]:
    """Per role, how many turns each origin produced, and their shares.

    ``{role: {"model": n, "forced": n, "template": n, "executed": n, "unknown": n?,
    "shares": {origin: fraction}}}`` plus ``"trajectories"`` and ``"templated_trajectories"``
    (those with at least one templated user turn: the quantity the template cap bounds).
    """
    items = list(trajectories)
    counts = count_origins(items)
    templated = sum(
        any(m.role == "user" and o == "template" for m, o in trajectory_origins(t)) for t in items
    )
    out: dict[str, Any] = {}
    for role, slot in counts.items():
        turns = sum(slot.values())
        out[role] = slot | {
            "shares": {k: round(v / turns, 4) for k, v in slot.items()} if turns else {}
        }
    out["trajectories"] = len(items)
    out["templated_trajectories"] = templated
    return out


def gate_failures(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, int]]:
    """``{gate: {reason: n}}`` over failed trajectories: the gate that stopped each one and
    the reason codes it gave (:meth:`Verdict.failure_codes`)."""
    out: dict[str, Counter[str]] = {}
    for trajectory in trajectories:
        if trajectory.passed or not trajectory.verdicts:
            continue
        verdict = trajectory.verdicts[-1]
        if verdict.passed:
            continue
        out.setdefault(verdict.gate, Counter()).update(set(verdict.failure_codes()))
    return {gate: dict(counter.most_common()) for gate, counter in out.items()}


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
