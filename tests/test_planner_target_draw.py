"""Target draws: the per-tool weights are computed once per category (not over the whole pool
at every pick: 54k tools made each pick cost about 0.08 s), and the draw is the same weighted
draw as before."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Mapping

from tooldojo.model import Tool
from tooldojo.synth.labels import ArgumentDrafter
from tooldojo.synth.planner import Planner, PlanOptions, plan_scenarios

S = {"type": "string"}


def tools(count: int = 60) -> list[Tool]:
    return [
        Tool(
            name=f"get_record_{i}",
            description=f"Get record {i} of the archive by its reference.",
            parameters={"type": "object", "properties": {"ref": S}, "required": ["ref"]},
            metadata={"domain": f"d{i % 3}"},
        )
        for i in range(count)
    ]


class CountingWeights(Mapping[str, float]):
    """Tool weights that count how often a weight is read."""

    def __init__(self, weights: dict[str, float]):
        self.weights, self.reads = weights, 0

    def __getitem__(self, key: str) -> float:
        self.reads += 1
        return self.weights[key]

    def get(self, key, default=None):  # type: ignore[override]
        self.reads += 1
        return self.weights.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)


def test_weights_are_read_once_per_category_not_once_per_pick():
    pool = tools()
    weights = CountingWeights({"get_record_1": 5.0})
    options = PlanOptions(n=40, seed=3, mix={"single": 1}, min_per_tool=0, tool_weights=weights)
    result = asyncio.run(plan_scenarios(pool, options))
    assert len(result.scenarios) == 40
    assert weights.reads == len(pool)  # one pass over the names; each pick read all before


def test_the_draw_is_the_weighted_draw_over_the_feasible_names():
    pool = tools(12)
    weights = {"get_record_0": 0.0, "get_record_5": 9.0}
    domains = {"d1": 2.0}
    planner = Planner(
        pool,
        PlanOptions(n=1, min_per_tool=0, tool_weights=weights, domain_weights=domains),
        ArgumentDrafter(),
    )
    names = sorted(tool.name for tool in pool)
    expected_weights = [
        weights.get(name, 1.0) * domains.get(f"d{int(name.rsplit('_', 1)[1]) % 3}", 1.0)
        for name in names
    ]
    for seed in range(200):
        expected = random.Random(seed).choices(names, weights=expected_weights)[0]
        assert planner._pick_target("single", [], random.Random(seed)) == expected
    assert "get_record_0" not in {
        planner._pick_target("single", [], random.Random(s)) for s in range(300)
    }


def test_a_passed_over_tool_leaves_the_pool_of_every_later_draw():
    pool = tools(6)
    planner = Planner(
        pool,
        PlanOptions(n=1, min_per_tool=0, tool_weights={"get_record_2": 1e9}),
        ArgumentDrafter(),
    )
    assert planner._pick_target("single", [], random.Random(0)) == "get_record_2"
    planner.undrawable.add("get_record_2")
    drawn = {planner._pick_target("single", [], random.Random(seed)) for seed in range(100)}
    assert "get_record_2" not in drawn and len(drawn) == 5
