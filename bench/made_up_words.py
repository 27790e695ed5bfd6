"""What the made-up-words checks cost and buy on a synthesis run's trajectories.

Verifies every finished trajectory of a run twice, with the default gates and with the two
made-up-words checks switched off (the turns gate's ``made_up_words``, the request gate's
``made_up_request``), and prints per category: finished, passed both ways, and the ones those
checks alone fail. Then, over the passed trajectories, the share of the assistant's text turns
and the user's messages that still hold any made-up word (one is let through), and the share
of made-up words among all their words, as ``verify/words.py`` counts them.

    python bench/made_up_words.py runs/scale4 [--skip-ids FILE]

Synthesis retries a message that fails the rule (the assistant's answer checks and the user
simulator's request checks share it), so a run played with these checks on shows what is left
after the retries; one played before them shows what they would cut.
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio

from tooldojo.jsonl import read_jsonl
from tooldojo.model import Trajectory
from tooldojo.verify import VerifyOptions, content, requests, verify_trajectory
from tooldojo.verify.content import conversation_words
from tooldojo.verify.words import made_up_words


@contextlib.contextmanager
def checks_off() -> Iterator[None]:
    """The two gates without their made-up-words rule."""
    saved = content.too_many_made_up, requests.too_many_made_up
    content.too_many_made_up = requests.too_many_made_up = lambda text, allowed: None
    try:
        yield
    finally:
        content.too_many_made_up, requests.too_many_made_up = saved


async def passes(trajectories: list[Trajectory]) -> list[bool]:
    return [(await verify_trajectory(t, VerifyOptions())).passed for t in trajectories]


def word_shares(trajectory: Trajectory, counts: Counter[str]) -> None:
    """Add the trajectory's messages with any made-up word, and the words, to ``counts``."""
    planned = requests.plan_words(trajectory)
    for position, message in enumerate(trajectory.messages):
        if not message.content or message.tool_calls or message.role not in ("user", "assistant"):
            continue
        allowed = conversation_words(trajectory, position)
        if message.role == "user":
            allowed |= planned
        invented, words = made_up_words(message.content, allowed)
        counts[f"{message.role} messages"] += 1
        counts[f"{message.role} messages with one"] += bool(invented)
        counts[f"{message.role} words"] += words
        counts[f"{message.role} made-up words"] += len(invented)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a synthesis run folder (trajectories.jsonl)")
    parser.add_argument("--skip-ids", type=Path, help="a file of trajectory ids to leave out")
    args = parser.parse_args()
    skip = set(args.skip_ids.read_text().split()) if args.skip_ids else set()
    trajectories = [
        t for t in read_jsonl(args.run / "trajectories.jsonl", Trajectory) if t.id not in skip
    ]
    with_checks = anyio.run(passes, trajectories)
    with checks_off():
        without = anyio.run(passes, trajectories)
    table: dict[str, Counter[str]] = {}
    counts: Counter[str] = Counter()
    for trajectory, passed, passed_without in zip(trajectories, with_checks, without, strict=True):
        row = table.setdefault(trajectory.category, Counter())
        row["finished"] += 1
        row["passed"] += passed
        row["passed without"] += passed_without
        row["failed only by made-up words"] += passed_without and not passed
        if passed:
            word_shares(trajectory, counts)
    total = sum(table.values(), Counter())
    print(f"{len(trajectories)} finished trajectories in {args.run} ({len(skip)} ids skipped)")
    print(f"{'category':18s} finished  passed  without the checks  cut by them alone")
    for name, row in [*sorted(table.items()), ("all", total)]:
        print(
            f"{name:18s} {row['finished']:8d} {row['passed']:7d} {row['passed without']:19d} "
            f"{row['failed only by made-up words']:18d}"
        )
    for role in ("assistant", "user"):
        messages, words = counts[f"{role} messages"], counts[f"{role} words"]
        if messages:
            print(
                f"passed {role} text messages: {counts[f'{role} messages with one']}/{messages} "
                f"hold a made-up word; {counts[f'{role} made-up words']}/{words} words made up "
                f"({counts[f'{role} made-up words'] / max(words, 1):.1%})"
            )


if __name__ == "__main__":
    main()
