"""Who wrote each turn, and how much forced data an iteration may train on.

Every message a synthesis episode writes carries ``Message.origin`` (the shared contract):
``model`` (the role's model wrote it freely), ``forced`` (teacher-forced from the label),
``template`` or ``executed`` (a real tool result). :func:`count_origins` counts them, falling
back on the older marks ``guided`` and ``user_sources`` for trajectories written before
``origin`` existed.

Rejection sampling for self-play (:func:`admit_by_forced_share`): a trajectory with nothing
forced always enters the pool; trajectories with forced assistant turns enter, the least forced
first, only while the pool's share of forced assistant turns stays within the iteration's cap.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from tooldojo.model import Message, Trajectory

ORIGINS = ("model", "forced", "template", "executed")
ROLE_OF = {"assistant": "assistant", "user": "user", "tool": "server"}
"""Message role → the synthesis role that wrote it (tool results come from the server)."""


def message_origin(message: Message, fallback_user: str | None = None) -> str:
    """``message.origin``, or what older marks say: ``guided`` → forced, a user source naming
    a template → template, a tool result → executed, else model."""
    origin = getattr(message, "origin", None)
    if origin in ORIGINS:
        return origin
    if message.role == "assistant":
        return "forced" if getattr(message, "guided", None) else "model"
    if message.role == "user":
        return "template" if fallback_user and "template" in fallback_user else "model"
    return "executed"


def count_origins(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, int]]:
    """``{role: {origin: n}}`` over the messages of ``trajectories`` (system prompts aside)."""
    table: dict[str, dict[str, int]] = {
        role: dict.fromkeys(ORIGINS, 0) for role in ("user", "assistant", "server")
    }
    for trajectory in trajectories:
        sources = list(trajectory.metadata.get("user_sources") or [])
        users = 0
        for message in trajectory.messages:
            role = ROLE_OF.get(message.role)
            if role is None:
                continue
            fallback = None
            if message.role == "user":
                fallback = str(sources[users]) if users < len(sources) else None
                users += 1
            table[role][message_origin(message, fallback)] += 1
    return table


def accounting(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, int]]:
    """``iter-NNN/accounting.json``: ``{role: {origin: n}}`` with the loop's role names.

    Not :func:`tooldojo.verify.accounting.accounting`: that one names the tool role ``tool``,
    adds shares, and has no fallback for trajectories written before ``Message.origin``; the
    loop resumes runs that hold such trajectories.
    """
    return count_origins(trajectories)


def assistant_turns_by_origin(trajectory: Trajectory) -> tuple[int, int]:
    """(forced, all) assistant turns of one trajectory."""
    turns = [m for m in trajectory.messages if m.role == "assistant"]
    return sum(message_origin(m) == "forced" for m in turns), len(turns)


def call_turn_origins(trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """Assistant turns whose label is a call, by origin: the figure self-play must raise."""
    counts: dict[str, int] = defaultdict(int)
    for trajectory in trajectories:
        turn = 0
        for message in trajectory.messages:
            if message.role != "assistant":
                continue
            label = trajectory.labels[turn] if turn < len(trajectory.labels) else None
            if label is not None and label.kind == "call":
                counts[message_origin(message)] += 1
            turn += 1
    return dict(counts)


def admit_by_forced_share(
    trajectories: Sequence[Trajectory], cap: float, seed: int = 0
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Trajectories with nothing forced, plus forced ones (least forced first) while the share
    of forced assistant turns among all admitted ones stays at most ``cap``.

    Returns the admitted trajectories (in their original order) and what happened.
    """
    clean, forced = [], []
    for trajectory in trajectories:
        f, n = assistant_turns_by_origin(trajectory)
        (forced if f else clean).append((trajectory, f, n))
    total_forced = 0
    total_turns = sum(n for _, _, n in clean)
    rng = random.Random(f"forced|{seed}")
    rng.shuffle(forced)
    forced.sort(key=lambda item: item[1] / max(item[2], 1))
    admitted = {id(t) for t, _, _ in clean}
    rejected = 0
    for trajectory, f, n in forced:
        if (total_forced + f) <= cap * (total_turns + n):
            admitted.add(id(trajectory))
            total_forced += f
            total_turns += n
        else:
            rejected += 1
    kept = [t for t in trajectories if id(t) in admitted]
    report = {
        "cap": cap,
        "clean": len(clean),
        "forced_admitted": len(forced) - rejected,
        "forced_rejected": rejected,
        "forced_share": total_forced / total_turns if total_turns else 0.0,
    }
    return kept, report
