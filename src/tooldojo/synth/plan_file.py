"""A run's plan read from ``scenarios.jsonl`` as it is needed, instead of held in memory.

Planned scenarios are large objects (labels, asks, value sources: about 6 KB each in
memory), so a run of 10,000 episodes would hold some 60 MB just for its plan. The plan is
streamed to disk when it is made (:func:`tooldojo.jsonl.atomic_jsonl_writer`) and read back
from there: counted once, iterated lazily, and served in play order by seeking to
each line's offset. Scenarios added after planning (the loop's expansions from failures) are
few and kept in memory beside the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.jsonl import read_jsonl
from tooldojo.model import Scenario


def expected_model_calls(turns: Iterable[Any]) -> int:
    """Model calls an episode needs if played to plan: per turn the user's request, the
    planned steps, the closing answer, and a clarification round when a value is withheld.

    ``turns`` are :class:`~tooldojo.model.ScenarioTurn` objects or their JSON form.
    """
    total = 0
    for turn in turns:
        data = turn if isinstance(turn, dict) else turn.model_dump(include={"steps", "withheld"})
        total += 2 + len(data.get("steps") or []) + 2 * bool(data.get("withheld"))
    return total


@dataclass(frozen=True)
class PlanEntry:
    """What the runner needs of a planned scenario before playing it (about 200 bytes)."""

    id: str
    category: str
    calls: int
    """:func:`expected_model_calls`."""
    offset: int
    """Byte offset of its line in the file; ``-1 - k`` for the k-th scenario added later."""


class PlanFile:
    """The scenarios of ``scenarios.jsonl`` (plus any added later), read lazily.

    One JSON pass builds :meth:`entries` (id, category, expected length, offset), which
    serves counting, resume bookkeeping and the play order; whole scenarios are parsed only
    when they are played.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.added: list[Scenario] = []
        self._index: list[PlanEntry] | None = None

    def check(self) -> int:
        """Validate every line (a bad file is an error now, not mid-run); returns the count."""
        return sum(1 for _ in read_jsonl(self.path, Scenario))

    def entries(self) -> list[PlanEntry]:
        """The index of the file (read once; the file does not change) and of added scenarios."""
        if self._index is None:
            self._index = []
            with self.path.open("rb") as handle:
                offset = 0
                for line in handle:
                    if line.endswith(b"\n") and line.strip():
                        record = json.loads(line)
                        calls = expected_model_calls(record["turns"])
                        entry = PlanEntry(str(record["id"]), record["category"], calls, offset)
                        self._index.append(entry)
                    offset += len(line)
        added = [
            PlanEntry(s.id, s.category, expected_model_calls(s.turns), -1 - k)
            for k, s in enumerate(self.added)
        ]
        return self._index + added

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[Scenario]:
        yield from read_jsonl(self.path, Scenario)
        yield from self.added

    def extend(self, scenarios: Iterable[Scenario]) -> None:
        self.added.extend(scenarios)

    def in_play_order(self, skip: set[str]) -> Iterator[Scenario]:
        """Scenarios not in ``skip``, in :func:`play_order`, each parsed when it is reached."""
        pending = [entry for entry in self.entries() if entry.id not in skip]
        order = play_order([(entry.category, entry.calls) for entry in pending])
        with self.path.open("rb") as handle:
            for index in order:
                offset = pending[index].offset
                if offset < 0:
                    yield self.added[-1 - offset]
                else:
                    handle.seek(offset)
                    yield Scenario.model_validate_json(handle.readline())


ORDER_BLOCK = 256
"""Scenarios at the end of :func:`play_order` played longest first: several times any usual
``--concurrency``."""


def play_order(pending: list[tuple[str, int]], block: int = ORDER_BLOCK) -> list[int]:
    """Indices of ``pending`` (``(category, expected model calls)`` in plan order) in the
    order to play them: categories interleaved in proportion, and the last ``block`` of them
    longest episode first.

    Why interleaved: a run that outlasts its session (6,400 scenarios at 2-3 multi-turn
    episodes a minute here) is taken as it stands, so every stretch of it should hold every
    category in its planned share; playing all the longest ones first left a stopped run with
    two categories out of eight. Sorting every block longest first was no better: a run
    restarted before it reached the end of a block (three times in one session) never
    played the shortest category, irrelevance. Why longest first at the end (LPT
    scheduling): a long multi-turn episode started last would hold the run open while the
    other slots sit idle.
    """
    totals: dict[str, int] = {}
    for category, _ in pending:
        totals[category] = totals.get(category, 0) + 1
    seen: dict[str, int] = {}
    spread = []  # the k-th of n scenarios of a category at (k + 0.5) / n of the run
    for position, (category, _) in enumerate(pending):
        rank = seen[category] = seen.get(category, -1) + 1
        spread.append(((rank + 0.5) / totals[category], position))
    order = [position for _, position in sorted(spread)]
    cut = max(0, len(order) - block)
    # stable: ties keep their interleaved order
    return order[:cut] + sorted(order[cut:], key=lambda position: -pending[position][1])


def ids_and_categories(scenarios: Iterable[Scenario]) -> Iterator[tuple[str, str]]:
    """``(id, category)`` of each scenario; from the index alone for a plan file."""
    if isinstance(scenarios, PlanFile):
        return ((entry.id, entry.category) for entry in scenarios.entries())
    return ((scenario.id, scenario.category) for scenario in scenarios)


def in_play_order(scenarios: Iterable[Scenario], skip: set[str]) -> Iterator[Scenario]:
    """:meth:`PlanFile.in_play_order` for a plan file, :func:`play_order` in memory otherwise."""
    if isinstance(scenarios, PlanFile):
        return scenarios.in_play_order(skip)
    pending = [scenario for scenario in scenarios if scenario.id not in skip]
    order = play_order([(s.category, expected_model_calls(s.turns)) for s in pending])
    return (pending[index] for index in order)
