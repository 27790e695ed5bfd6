"""A run's plan read from ``scenarios.jsonl`` as it is needed, instead of held in memory.

Planned scenarios are large objects (labels, asks, value sources: about 6 KB each in
memory), so a run of 10,000 episodes would hold some 60 MB just for its plan. The plan is
streamed to disk when it is made (:func:`tooldojo.jsonl.atomic_jsonl_writer`) and read back
from there: counted once, iterated lazily, and served longest episode first by seeking to
each line's offset. Scenarios added after planning (the loop's expansions from failures) are
few and kept in memory beside the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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


class PlanFile:
    """The scenarios of ``scenarios.jsonl`` (plus any added later), read lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.added: list[Scenario] = []
        self._count: int | None = None

    def check(self) -> int:
        """Validate every line (a bad file is an error now, not mid-run); returns the count."""
        self._count = sum(1 for _ in read_jsonl(self.path, Scenario))
        return self._count

    def __len__(self) -> int:
        if self._count is None:
            self.check()
        return (self._count or 0) + len(self.added)

    def __iter__(self) -> Iterator[Scenario]:
        yield from read_jsonl(self.path, Scenario)
        yield from self.added

    def extend(self, scenarios: Iterable[Scenario]) -> None:
        self.added.extend(scenarios)

    def longest_first(self, skip: set[str]) -> Iterator[Scenario]:
        """Scenarios not in ``skip``, longest expected episode first (ties in plan order).

        Longest first (LPT scheduling): a long multi-turn episode started last would hold the
        whole run open while the other slots sit idle. Only (length, offset) pairs are held.
        """
        keys: list[tuple[int, int, int]] = []  # (-expected calls, position, byte offset)
        with self.path.open("rb") as handle:
            offset = lines = 0
            for line in handle:
                if line.endswith(b"\n") and line.strip():
                    record = json.loads(line)
                    if str(record["id"]) not in skip:
                        keys.append((-expected_model_calls(record["turns"]), lines, offset))
                offset += len(line)
                lines += 1
            for extra, scenario in enumerate(self.added):  # offsets -1, -2, ...: in memory
                if scenario.id not in skip:
                    keys.append((-expected_model_calls(scenario.turns), lines + extra, -1 - extra))
            keys.sort()
            for _, _, where in keys:
                if where < 0:
                    yield self.added[-1 - where]
                else:
                    handle.seek(where)
                    yield Scenario.model_validate_json(handle.readline())


def longest_first(scenarios: Iterable[Scenario], skip: set[str]) -> Iterator[Scenario]:
    """:meth:`PlanFile.longest_first` for a plan file, a sort in memory for anything else."""
    if isinstance(scenarios, PlanFile):
        return scenarios.longest_first(skip)
    pending = [scenario for scenario in scenarios if scenario.id not in skip]
    pending.sort(key=lambda scenario: expected_model_calls(scenario.turns), reverse=True)
    return iter(pending)
