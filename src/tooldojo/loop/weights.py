"""Scenario weights for the next iteration: more weight where the model is weak.

weight(x) = floor + (1 - accuracy(x)), for each category and each target tool probed in the
training pool, normalized to a mean of 1 (so the planner's mix keeps its scale). A category or tool
the model always gets right keeps ``floor / (1 + floor)`` of the weight of one it always
fails, so nothing disappears from the data. Unprobed ones keep weight 1.

Held-out probe results never count: weighting the next data toward the tools and categories the
model failed on held-out would train toward the held-out split, and its accuracy, the loop's
measure of progress, would rise for that reason alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tooldojo.loop.probe import ProbeRecord


def _normalized(raw: dict[str, float]) -> dict[str, float]:
    if not raw:
        return {}
    mean = sum(raw.values()) / len(raw)
    return {key: round(value / mean, 4) for key, value in sorted(raw.items())}


def next_weights(records: Iterable[ProbeRecord], floor: float) -> dict[str, dict[str, float]]:
    """``{"categories": {...}, "tools": {...}}`` as synthesis' planner reads them, from the
    records of the training split only."""
    by_category: dict[str, list[bool]] = defaultdict(list)
    by_tool: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        if record.split != "train":
            continue
        by_category[record.category].append(record.correct)
        for call in record.label.calls:
            by_tool[call.name].append(record.correct)

    def weigh(groups: dict[str, list[bool]]) -> dict[str, float]:
        return _normalized({k: floor + 1 - sum(v) / len(v) for k, v in groups.items() if v})

    return {"categories": weigh(by_category), "tools": weigh(by_tool)}
