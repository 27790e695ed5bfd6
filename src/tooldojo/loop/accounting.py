"""How much forced data an iteration may train on, and who wrote its call turns.

Who wrote each turn is counted by :mod:`tooldojo.verify.accounting` (``Message.origin``, with
its fallback for run directories written before ``origin`` existed); this module holds the
loop's own uses of it.

Rejection sampling for self-play (:func:`admit_by_forced_share`): a trajectory with nothing
forced always enters the pool; trajectories with forced assistant turns enter, the least forced
first, only while the pool's share of forced assistant turns stays within the iteration's cap.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from tooldojo.model import Trajectory
from tooldojo.verify.accounting import trajectory_origins


def assistant_turns_by_origin(trajectory: Trajectory) -> tuple[int, int]:
    """(forced, all) assistant turns of one trajectory."""
    turns = [o for m, o in trajectory_origins(trajectory) if m.role == "assistant"]
    return sum(origin == "forced" for origin in turns), len(turns)


def call_turn_origins(trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """Assistant turns whose label is a call, by origin: the figure self-play must raise."""
    counts: dict[str, int] = defaultdict(int)
    for trajectory in trajectories:
        turn = 0
        for message, origin in trajectory_origins(trajectory):
            if message.role != "assistant":
                continue
            label = trajectory.labels[turn] if turn < len(trajectory.labels) else None
            if label is not None and label.kind == "call":
                counts[origin] += 1
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
