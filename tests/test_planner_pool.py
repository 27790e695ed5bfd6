"""The planner over a refined pool: domains give hard negatives, the graph gives chains, and a
pool of thousands of tools still yields small per-scenario tool sets, fast."""

from __future__ import annotations

import asyncio
import time

from tooldojo.model import Tool
from tooldojo.synth.planner import PlanOptions, plan_scenarios


def tool(name: str, domain: str, description: str, params: dict, feeds=(), **extra) -> Tool:
    output_schema = extra.pop("output_schema", None)
    return Tool(
        name=name,
        description=description,
        parameters={"type": "object", "properties": params, "required": list(params)},
        source=f"openapi:{extra.pop('api', domain)}.json",
        metadata={"domain": domain, "graph": {"feeds": list(feeds)}, **extra},
        output_schema=output_schema,
    )


S = {"type": "string"}


def pool() -> list[Tool]:
    return [
        tool("getForecast", "weather", "Weather forecast for a city by day.", {"city": S}),
        tool("getCurrentWeather", "weather", "Current weather in a city.", {"city": S}),
        tool("getWeatherAlerts", "weather", "Weather alerts for a city today.", {"city": S}),
        tool("getStockQuote", "financial", "Latest stock quote for a ticker.", {"ticker": S}),
        tool("getExchangeRate", "financial", "Exchange rate between currencies.", {"base": S}),
        tool("getDividends", "financial", "Dividend history for a stock ticker.", {"ticker": S}),
        tool(
            "searchPlaces",
            "location",
            "Search places near a city.",
            {"city": S},
            feeds=["getPlaceDetails"],
            api="geo",
            output_schema={"type": "array", "items": {"properties": {"placeRef": S}}},
        ),
        tool(
            "getPlaceDetails",
            "location",
            "Details of one place.",
            {"placeRef": S},
            api="geo",
        ),
    ]


def plan(tools, **options):
    return asyncio.run(plan_scenarios(tools, PlanOptions(**options))).scenarios


def domain_of(tools, name):
    return next(t for t in tools if t.name == name).metadata["domain"]


def test_multiple_offers_same_domain_hard_negatives_and_another_domain():
    tools = pool()
    scenarios = plan(tools, n=30, mix={"multiple": 1}, min_per_tool=0, seed=3)
    mixed = 0
    for scenario in scenarios:
        target = scenario.turns[0].steps[0].calls[0].name
        others = [n for n in scenario.tools if n != target]
        domains = {domain_of(tools, n) for n in others}
        own = domain_of(tools, target)
        assert len(others) >= 1
        assert any(domain_of(tools, n) != own for n in others), scenario.tools
        if own in domains:
            mixed += 1
    assert mixed >= 10, "hard negatives from the target's own domain should be common"


def test_irrelevance_offers_near_misses_or_unrelated_tools_never_the_asked_one():
    from tooldojo.synth.planner import NEAR_MISS_MAX_COSINE
    from tooldojo.synth.similarity import ToolSimilarity

    tools = [
        *pool(),
        # Could serve a request written for getForecast: must never be its near miss.
        tool("getForecastByDay", "weather", "Weather forecast for a city by day.", {"city": S}),
    ]
    sim = ToolSimilarity(tools)
    assert sim.cosine("getForecast", "getForecastByDay") >= NEAR_MISS_MAX_COSINE
    scenarios = plan(tools, n=40, mix={"irrelevance": 1}, min_per_tool=0, seed=5)
    kinds = {True: 0, False: 0}
    for scenario in scenarios:
        asked = scenario.metadata["asks"][0][0]["tool"]
        assert asked not in scenario.tools
        near = scenario.metadata["near_miss"]
        kinds[near] += 1
        for name in scenario.tools:
            if near:
                assert sim.cosine(asked, name) < NEAR_MISS_MAX_COSINE, (asked, name)
                assert sim.score(asked, name) >= 0.1, (asked, name)
            else:
                assert sim.cosine(asked, name) <= 0.05, (asked, name)
    assert kinds[True] >= 10 and kinds[False] >= 10, kinds


def test_multi_step_follows_graph_edges():
    tools = pool()
    scenarios = plan(tools, n=4, mix={"multi_step": 1}, min_per_tool=0)
    for scenario in scenarios:
        first, second = scenario.turns[0].steps[0], scenario.turns[0].steps[1]
        assert first.calls[0].name == "searchPlaces"
        assert second.calls[0].name == "getPlaceDetails"
        assert "$result" in second.calls[0].arguments["placeRef"][0]


def test_multi_step_is_impossible_without_an_edge_or_id_chain():
    tools = [t for t in pool() if t.name != "getPlaceDetails"]
    result = asyncio.run(
        plan_scenarios(tools, PlanOptions(n=4, mix={"multi_step": 1, "single": 1}, strict=False))
    )
    assert any("skipping multi_step" in w for w in result.warnings)


def test_domain_weights_steer_targets():
    tools = pool()
    weights = {"financial": 0.0, "location": 0.0}
    scenarios = plan(tools, n=20, mix={"single": 1}, min_per_tool=0, domain_weights=weights)
    targets = {s.turns[0].steps[0].calls[0].name for s in scenarios}
    assert targets and all(domain_of(tools, n) == "weather" for n in targets)
    unweighted = plan(tools, n=20, mix={"single": 1}, min_per_tool=0)
    assert any(domain_of(tools, s.tools[0]) != "weather" for s in unweighted)


def test_a_large_pool_plans_small_tool_sets_fast():
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
    ]
    tools = []
    for i in range(3000):
        domain = f"d{i % 30}"
        noun = f"{words[i % 12]}{words[(i // 12) % 12]}{i}"
        tools.append(
            tool(
                f"get_{noun}",
                domain,
                f"Get the {words[i % 12]} {words[(i // 7) % 12]} record number {i}.",
                {f"{words[i % 12]}Id": S},
                api=f"api{i // 50}",
            )
        )
    started = time.perf_counter()
    result = asyncio.run(
        plan_scenarios(
            tools,
            PlanOptions(n=40, mix={"single": 1, "multiple": 1, "parallel_multiple": 1}, seed=1),
        )
    )
    seconds = time.perf_counter() - started
    assert len(result.scenarios) == 40  # no 3,000 coverage fill-ins
    assert any("no coverage fill-ins" in w for w in result.warnings)
    assert max(len(s.tools) for s in result.scenarios) <= 5
    assert seconds < 30, f"planning 40 scenarios over 3,000 tools took {seconds:.1f} s"


def impossible() -> Tool:
    """A tool no value can be drawn for: no string is all "a", at least 5 and at most 3 long."""
    return tool(
        "getImpossible",
        "weather",
        "Weather for a code nobody can write.",
        {"code": {"type": "string", "pattern": "^a+$", "minLength": 5, "maxLength": 3}},
    )


def test_a_tool_without_drawable_arguments_is_passed_over_not_fatal():
    tools = [*pool(), impossible()]
    result = asyncio.run(
        plan_scenarios(tools, PlanOptions(n=24, seed=0, tool_weights={"getImpossible": 1e6}))
    )
    assert len(result.scenarios) == 24  # another target took its place each time
    # it may still be offered as a distractor, but no planned call uses it
    assert all("getImpossible" not in str(s.turns) for s in result.scenarios)
    assert any("passed over getImpossible" in warning for warning in result.warnings)


def test_a_length_bounded_pattern_id_is_drawn():
    import random

    from tooldojo.synth.values import ValueSampler, schema_error

    schema = {
        "type": "object",
        "properties": {
            "testSetId": {
                "type": "string",
                "pattern": "^[0-9a-zA-Z]+$",
                "minLength": 10,
                "maxLength": 10,
            }
        },
        "required": ["testSetId"],
    }
    for seed in range(5):
        arguments = ValueSampler(random.Random(seed)).arguments(schema)
        assert schema_error(schema, arguments) is None, arguments


def test_coverage_fill_ins_pass_over_a_tool_without_drawable_arguments():
    result = asyncio.run(
        plan_scenarios([*pool(), impossible()], PlanOptions(n=2, seed=0, min_per_tool=1))
    )
    assert all("getImpossible" not in str(s.turns) for s in result.scenarios)
    assert any("passed over getImpossible" in warning for warning in result.warnings)


def test_planning_drafts_scenarios_at_once_and_plans_the_same_scenarios():
    import hashlib
    import json as json_module

    import anyio

    from tooldojo.llm.base import Completion
    from tooldojo.synth.labels import ArgumentDrafter

    class SlowDrafter:
        """Answers from the prompt alone after a delay that scrambles the finishing order."""

        name = "slow"

        def __init__(self) -> None:
            self.in_flight = self.most = 0

        async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
            prompt = messages[-1].content
            digest = hashlib.sha256(f"{prompt}{sampling.seed}".encode()).hexdigest()
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await anyio.sleep(int(digest[:2], 16) / 20_000)
            self.in_flight -= 1
            names = [n for n in ("city", "ticker", "base", "placeRef") if f"- {n} (" in prompt]
            values = {name: f"{name}-{digest[:6]}" for name in names}
            return Completion(text=json_module.dumps(values), model=self.name)

    def planned(concurrency: int) -> tuple[list[dict], int]:
        model = SlowDrafter()
        options = PlanOptions(n=24, seed=3, min_per_tool=0, concurrency=concurrency)
        result = asyncio.run(plan_scenarios(pool(), options, ArgumentDrafter(model)))
        return [s.model_dump() for s in result.scenarios], model.most

    one_at_a_time, most_alone = planned(1)
    together, most_together = planned(8)
    assert most_alone == 1 and most_together > 1  # the drafts really ran at once
    assert together == one_at_a_time
    assert "city-" in json_module.dumps(together)  # the values are the drafter's, not a fallback


def test_clarify_withholds_a_value_no_other_planned_value_carries():
    """Withholding "12" while "12 Main Street" must be told makes the request unwritable (the
    user simulator drops the episode); the planner withholds another parameter instead."""
    from tooldojo.agents.user import RequestCheck
    from tooldojo.synth.planner import _cleanly_withholdable, _withholdable

    visit = tool("bookVisit", "travel", "Book a visit.", {"number": S, "address": S, "city": S})
    arguments = {"number": "12", "address": "12 Main Street", "city": "Oslo"}
    assert _withholdable(visit) == ["number", "address", "city"]
    assert _cleanly_withholdable(visit, arguments) == ["address", "city"]
    told = [v for k, v in arguments.items() if k != "number"]
    assert RequestCheck(required=told, forbidden=["12"], tool_names=[]).unwritable()
    assert not RequestCheck(
        required=["12", "Oslo"], forbidden=["12 Main Street"], tool_names=[]
    ).unwritable()
    # No clean choice: every withholdable parameter stays possible (the old behaviour).
    assert _cleanly_withholdable(visit, {"number": "7", "address": "7", "city": "7"}) == []
