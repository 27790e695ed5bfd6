"""The scenario planner: which tools, which category, which target calls, for every episode.

Deterministic given its inputs and seed (with the schema drafter; a model drafter adds the
model's own sampling). Categories are apportioned from a mix (times per-category weights) by
largest remainder, so every category with weight gets its share even for small ``n``; target
tools are drawn by per-tool weight after a coverage queue has given every tool its
``min_per_tool`` appearances. Both weight maps are how the closed loop steers synthesis
towards weak spots.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tooldojo.agents.user import carried, leaves
from tooldojo.errors import ToolDojoError
from tooldojo.model import CATEGORIES, Label, Scenario, ScenarioTurn, Tool
from tooldojo.synth.labels import (
    _ID_SUFFIX,
    ArgumentDrafter,
    DraftedCall,
    UndrawableArguments,
    _words,
    id_like,
    label_call,
    producer_score,
    reference,
)
from tooldojo.synth.similarity import ToolSimilarity
from tooldojo.synth.values import _flatten

OFF_DOMAIN_REQUESTS = (
    "Write a short poem about the first snow of winter.",
    "Who painted the ceiling of the Sistine Chapel?",
    "Give me three tips for sleeping better.",
    "Explain the difference between a virus and a bacterium in two sentences.",
    "Suggest a name for my new golden retriever puppy.",
    "What is the plural of 'cactus'?",
    "Tell me a fun fact about octopuses.",
    "How do I say 'thank you very much' in Italian?",
)
"""Requests no tool can serve, for ``irrelevance`` when every tool shares some vocabulary."""


@dataclass
class PlanOptions:
    """What to plan. ``mix`` and the weight maps are the closed loop's steering inputs."""

    n: int
    seed: int = 0
    mix: Mapping[str, float] | None = None
    """Share of each category (``None``: all categories equally)."""
    category_weights: Mapping[str, float] = field(default_factory=dict)
    tool_weights: Mapping[str, float] = field(default_factory=dict)
    domain_weights: Mapping[str, float] = field(default_factory=dict)
    """Per-domain factor on a tool's draw weight (``metadata["domain"]``; default 1)."""
    min_per_tool: int = 1
    coverage_pool_limit: int = 2000
    """Above this many tools, no coverage fill-ins: ``min_per_tool`` for a 10k-tool pool would
    add 10k scenarios nobody asked for; targets are still drawn from a shuffled queue first."""
    max_distractors: int = 3
    id_prefix: str = "s"
    strict: bool = True
    """Refuse a requested category the tools cannot support (else drop it with a warning)."""
    concurrency: int = 1
    """Scenarios built at once (each drafts its values with the model): a batching backend
    answers them together. Targets are still picked in scenario order, before any drafting."""


@dataclass(frozen=True)
class _TargetPool:
    """What a target draw for one category needs, computed once: a pool of 54k tools made
    every pick filter, weigh and sum all names (about 0.08 s a pick)."""

    names: list[str]
    members: Container[str]
    """``names`` for membership tests (a set, or the planner's tool dict when it is all)."""
    cum_weights: list[float]
    passed_over: int
    """How many undrawable tools it excludes (the set only grows, so this dates it)."""


@dataclass
class Plan:
    scenarios: list[Scenario]
    warnings: list[str] = field(default_factory=list)
    coverage_added: int = 0


def category_needs(
    category: str,
    tools: Sequence[Tool],
    sim: ToolSimilarity,
    pairs: Sequence[tuple[Tool, Tool, str, float]] | None = None,
) -> str | None:
    """Why ``category`` is impossible with ``tools`` (``None`` when it is possible)."""
    with_params = [t for t in tools if t.properties]
    if not tools:
        return "the registry is empty"
    if category in ("multiple", "parallel_multiple") and len(tools) < 2:
        return f"{category} needs at least 2 tools; the registry has {len(tools)}"
    if category == "parallel" and not with_params:
        return "parallel needs a tool with parameters (calls must differ)"
    if category == "clarify" and not any(_withholdable(t) for t in tools):
        return "clarify needs a tool with a required scalar argument to withhold"
    if category == "multi_step" and not (_step_pairs(tools) if pairs is None else pairs):
        return (
            "multi_step needs a tool whose id-like argument another tool returns "
            "(e.g. listBooks → getBook(bookId))"
        )
    return None


def _withholdable(tool: Tool) -> list[str]:
    out = []
    for name in tool.required:
        flat = _flatten(tool.properties.get(name, {}), tool.parameters)
        if flat.get("type") in ("string", "integer", "number") and "const" not in flat:
            out.append(name)
    return out


def _cleanly_withholdable(tool: Tool, arguments: Mapping[str, Any]) -> list[str]:
    """Withholdable parameters whose value no other planned value carries. A withheld "12"
    inside a told "12 Main Street" cannot be kept out of the request, so the user simulator
    gives the episode up (``RequestCheck.unwritable``); withholding another parameter saves it.
    """
    return [
        name
        for name in _withholdable(tool)
        if not carried(
            leaves(arguments.get(name)),
            [leaf for key, value in arguments.items() if key != name for leaf in leaves(value)],
        )
    ]


_DESTRUCTIVE = ("delete", "remove", "cancel", "drop", "destroy")


LARGE_POOL = 1000
"""From this many tools on, chains are only looked for within one API (same source)."""
TARGET_TRIES = 4
"""Targets tried for one scenario before it is left out of the plan (see ``_build_drawable``)."""


def _graph_pairs(tools: Sequence[Tool]) -> list[tuple[Tool, Tool, str, float]]:
    """Chains along the refined registry's tool graph (``metadata["graph"]["feeds"]``).

    The graph says which response feeds which tool; the parameter it feeds is the consumer's
    required scalar that the producer best explains (``producer_score``), else its first
    required id-like one. Edges whose consumer has no such parameter are no chain.
    """
    by_name = {tool.name: tool for tool in tools}
    pairs = []
    for producer in tools:
        if producer.name.lower().startswith(_DESTRUCTIVE):
            continue
        for name in (producer.metadata.get("graph") or {}).get("feeds") or []:
            consumer = by_name.get(name)
            if consumer is None:
                continue
            best: tuple[float, str] | None = None
            for param in consumer.required:
                flat = _flatten(consumer.properties.get(param, {}), consumer.parameters)
                if flat.get("type") not in ("string", "integer"):
                    continue
                score = producer_score(producer, consumer, param) + (1.0 if id_like(param) else 0)
                if score > 0 and (best is None or score > best[0]):
                    best = (score, param)
            if best is not None:
                pairs.append((producer, consumer, best[1], 1.5 + best[0]))
    return pairs


def _indexed_step_pairs(tools: Sequence[Tool]) -> list[tuple[Tool, Tool, str, float]]:
    """Chains within one source of a large pool, scoring only producers whose name shares a
    word with the parameter's entity (``petId`` → tools named ``...pet...``): the pairs that
    ``producer_score`` can rate at 1 or more without the spec naming the producer."""
    index: dict[str, list[Tool]] = {}
    for producer in tools:
        if not producer.name.lower().startswith(_DESTRUCTIVE):
            for word in _words(producer.name):
                index.setdefault(word, []).append(producer)
    pairs = []
    for consumer in tools:
        for param in consumer.required:
            flat = _flatten(consumer.properties.get(param, {}), consumer.parameters)
            if not id_like(param) or flat.get("type") not in ("string", "integer"):
                continue
            stem = _words(_ID_SUFFIX.sub("", param)) - {"id"}
            seen: set[str] = set()
            for word in stem:
                for producer in index.get(word, ()):
                    if producer.name in seen:
                        continue
                    seen.add(producer.name)
                    score = producer_score(producer, consumer, param)
                    if score > 0:
                        pairs.append((producer, consumer, param, score))
    return pairs


def _step_pairs(tools: Sequence[Tool]) -> list[tuple[Tool, Tool, str, float]]:
    """(producer, consumer, parameter, score) for every plausible multi-step chain.

    Destructive tools never produce (a deleted thing's id leads nowhere), and when some
    chain is well supported (the spec names the producer) weak guesses are dropped. A pool
    that carries a tool graph is chained along its edges; a large pool without one is
    searched per source only (all pairs of 10k tools is 10^8 scores).
    """
    graph = _graph_pairs(tools)
    if graph:
        return graph
    if len(tools) >= LARGE_POOL:
        groups: dict[str, list[Tool]] = {}
        for tool in tools:
            groups.setdefault(tool.source, []).append(tool)
        out = []
        for group in groups.values():
            out += _indexed_step_pairs(group)
        strong = [pair for pair in out if pair[3] >= 1.5]
        return strong or out
    pairs = []
    for consumer in tools:
        for param in consumer.required:
            flat = _flatten(consumer.properties.get(param, {}), consumer.parameters)
            if not id_like(param) or flat.get("type") not in ("string", "integer"):
                continue
            for producer in tools:
                if producer.name.lower().startswith(_DESTRUCTIVE):
                    continue
                score = producer_score(producer, consumer, param)
                if score > 0:
                    pairs.append((producer, consumer, param, score))
    strong = [pair for pair in pairs if pair[3] >= 1.5]
    return strong or pairs


def apportion(n: int, weights: Mapping[str, float]) -> Counter[str]:
    """``n`` split by ``weights`` with the largest-remainder method (sums exactly to ``n``)."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0 or n <= 0:
        return Counter()
    exact = {k: n * w / total for k, w in weights.items() if w > 0}
    counts = Counter({k: math.floor(v) for k, v in exact.items()})
    rest = n - sum(counts.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:rest]:
        counts[key] += 1
    return counts


class Planner:
    """Plans scenarios over a tool registry (see the module docstring)."""

    def __init__(self, tools: Sequence[Tool], options: PlanOptions, drafter: ArgumentDrafter):
        if not tools:
            raise ToolDojoError("the tool registry is empty: nothing to plan scenarios for")
        self.tools = {tool.name: tool for tool in tools}
        self.options = options
        self.drafter = drafter
        self.sim = ToolSimilarity(list(tools))
        self.pairs = _step_pairs(list(tools))
        self.domains: dict[str, list[str]] = {}
        for tool in tools:
            self.domains.setdefault(_domain(tool), []).append(tool.name)
        self._feasible_cache: dict[str, list[str]] = {}
        self._target_pools: dict[str, _TargetPool] = {}
        self.appearances: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.coverage_added = 0
        self.undrawable: set[str] = set()
        """Tools no schema-valid arguments could be drawn for: never picked as a target."""

    def category_counts(self) -> Counter[str]:
        options = self.options
        mix = dict(options.mix) if options.mix else {c: 1.0 for c in CATEGORIES}
        unknown = [c for c in mix if c not in CATEGORIES]
        if unknown:
            raise ToolDojoError(
                f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                f"choose from {', '.join(CATEGORIES)}"
            )
        weights: dict[str, float] = {}
        for category, share in mix.items():
            if share <= 0:
                continue
            problem = category_needs(category, list(self.tools.values()), self.sim, self.pairs)
            if problem is not None:
                if options.strict and options.mix:
                    raise ToolDojoError(f"category {category} is impossible here: {problem}")
                self.warnings.append(f"skipping {category}: {problem}")
                continue
            weights[category] = share * options.category_weights.get(category, 1.0)
        if not weights:
            raise ToolDojoError("no requested category is possible with these tools")
        return apportion(options.n, weights)

    async def plan(self) -> Plan:
        scenarios = [scenario async for scenario in self.scenarios()]
        return Plan(scenarios, self.warnings, self.coverage_added)

    def scenario_id(self, index: int) -> str:
        return f"{self.options.id_prefix}{self.options.seed}-{index:05d}"

    def _replay(self, planned: Sequence[Scenario]) -> set[str]:
        """Count the tools of scenarios an interrupted plan already wrote (as :meth:`_build`
        counts them), so coverage goes on from where it stopped; their ids."""
        for scenario in planned:
            for name in scenario.tools:
                self.appearances[name] += 1
            if scenario.category == "irrelevance":  # its target: asked for, not offered
                for turn_asks in scenario.metadata.get("asks") or []:
                    for ask in turn_asks:
                        if ask.get("tool"):
                            self.appearances[ask["tool"]] += 1
        return {scenario.id for scenario in planned}

    async def scenarios(self, planned: Sequence[Scenario] = ()) -> AsyncIterator[Scenario]:
        """The plan one scenario at a time, so a plan of any size can stream to disk; the
        coverage fill-ins come last and :attr:`warnings` is complete once it is exhausted.

        ``planned``: the scenarios an interrupted run of the same plan already wrote. They are
        not built again (drafting values with a model is most of a plan's time: hours for a
        few thousand scenarios), and only the rest is yielded."""
        options = self.options
        done = self._replay(planned)
        rng = random.Random(f"plan|{options.seed}")
        categories = [c for c, k in sorted(self.category_counts().items()) for _ in range(k)]
        rng.shuffle(categories)
        coverage = [name for name in self.tools for _ in range(options.min_per_tool)]
        rng.shuffle(coverage)
        window = max(1, options.concurrency)
        numbered = [
            (index, category)
            for index, category in enumerate(categories)
            if self.scenario_id(index) not in done
        ]
        for start in range(0, len(numbered), window):
            for scenario in await self._build_window(numbered[start : start + window], coverage):
                if scenario is not None:
                    yield scenario
        index = len(categories)
        self.coverage_added = sum(
            1 for scenario_id in done if int(scenario_id.rsplit("-", 1)[1]) >= len(categories)
        )
        if len(self.tools) > options.coverage_pool_limit and options.min_per_tool > 0:
            self.warnings.append(
                f"no coverage fill-ins: the pool has {len(self.tools):,} tools "
                f"(over {options.coverage_pool_limit:,}); targets were drawn by weight"
            )
            return
        for name in self.tools:
            while self.appearances[name] < options.min_per_tool and name not in self.undrawable:
                while self.scenario_id(index) in done:
                    index += 1
                scenario_rng = random.Random(f"{options.seed}|{index}")
                try:
                    yield await self._build(index, "single", name, scenario_rng)
                except UndrawableArguments as error:
                    self._pass_over(error)
                    break  # the same seed would fail the same way: this tool gets no fill-in
                index += 1
                self.coverage_added += 1
        if self.coverage_added:
            self.warnings.append(
                f"added {self.coverage_added} single scenario(s) so every tool appears "
                f"{options.min_per_tool} time(s)"
            )

    # --- choosing tools -------------------------------------------------------------------------

    async def _build_window(
        self, window: list[tuple[int, str]], coverage: list[str]
    ) -> list[Scenario | None]:
        """Scenarios of ``window`` built at once, in window order.

        Why: drafting values one scenario at a time kept one request in a backend that decodes
        16 together, so planning 320 scenarios took about 10 minutes of a synthesis run. Each
        task picks its target before its first await, and tasks start in window order, so the
        picks happen in scenario order as before; only a pass-over's retry (a target with
        undrawable arguments) may see another scenario's pass-overs at another moment.
        """
        import anyio

        built: list[Scenario | None] = [None] * len(window)

        async def build(position: int, index: int, category: str) -> None:
            built[position] = await self._build_drawable(index, category, coverage)

        async with anyio.create_task_group() as group:
            for position, (index, category) in enumerate(window):
                group.start_soon(build, position, index, category)
        return built

    async def _build_drawable(
        self, index: int, category: str, coverage: list[str]
    ) -> Scenario | None:
        """Scenario ``index``, with another target when one of its tools admits no drawable
        arguments (a pattern with length bounds no sampler meets); ``None`` after
        :data:`TARGET_TRIES` such tools. One odd schema in a pool of 54k tools failed the
        loop's whole synthesis stage before (``DescribeTestSet``)."""
        for attempt in range(TARGET_TRIES):
            suffix = f"|{attempt}" if attempt else ""
            rng = random.Random(f"{self.options.seed}|{index}{suffix}")
            target = self._pick_target(category, coverage, rng)
            try:
                return await self._build(index, category, target, rng)
            except UndrawableArguments as error:
                self._pass_over(error)
        self.warnings.append(f"scenario {index} ({category}) not planned: no drawable target")
        return None

    def _pass_over(self, error: UndrawableArguments) -> None:
        self.undrawable.add(error.tool)
        self.warnings.append(f"passed over {error.tool}: {error}")

    def _feasible(self, category: str) -> list[str]:
        """Names that can be ``category``'s target, sorted (computed once per category)."""
        if category not in self._feasible_cache:
            self._feasible_cache[category] = sorted(self._feasible_uncached(category))
        return self._feasible_cache[category]

    def _feasible_uncached(self, category: str) -> list[str]:
        tools = self.tools.values()
        if category == "parallel":
            return [t.name for t in tools if t.required] or [t.name for t in tools if t.properties]
        if category == "clarify":
            return [t.name for t in tools if _withholdable(t)]
        if category == "multi_step":
            return sorted({producer.name for producer, *_ in self.pairs})
        return list(self.tools)

    def _target_pool(self, category: str) -> _TargetPool:
        """``category``'s draw pool, rebuilt only after a pass-over: the weights depend on
        the options and the names alone, not on appearances."""
        pool = self._target_pools.get(category)
        if pool is not None and pool.passed_over == len(self.undrawable):
            return pool
        names = self._feasible(category)
        if self.undrawable:
            names = [name for name in names if name not in self.undrawable] or names
        domain_weights = self.options.domain_weights
        weights = [
            max(self.options.tool_weights.get(n, 1.0), 0.0)
            * max(domain_weights.get(_domain(self.tools[n]), 1.0), 0.0)
            for n in names
        ]
        if sum(weights) <= 0:
            weights = [1.0] * len(names)
        pool = _TargetPool(
            names=names,
            members=set(names) if len(names) < len(self.tools) else self.tools,
            # rng.choices(names, weights=w) accumulates w exactly like this and then draws
            # from the sums, so passing them precomputed draws the very same target.
            cum_weights=list(itertools.accumulate(weights)),
            passed_over=len(self.undrawable),
        )
        self._target_pools[category] = pool
        return pool

    def _pick_target(self, category: str, coverage: list[str], rng: random.Random) -> str:
        pool = self._target_pool(category)
        for position, name in enumerate(coverage):
            if name in pool.members and self.appearances[name] < self.options.min_per_tool:
                del coverage[position]
                return name
        return rng.choices(pool.names, cum_weights=pool.cum_weights)[0]

    def _distractors(
        self, keep: list[str], rng: random.Random, most: int, *, other_domains: bool = False
    ) -> list[str]:
        """Up to ``most`` tools related to ``keep[0]``: hard negatives, not random noise.

        In a pool with domains the hard negatives come from ``keep[0]``'s own domain; with
        ``other_domains`` one of them is swapped for a tool of another domain (drawn by
        domain weight), so the model also learns to pass over the plainly unrelated.
        """
        if most <= 0:
            return []
        ranked = [n for n in self._related(keep[0], rng) if n not in keep][: most * 2]
        count = rng.randint(1, most) if ranked else 0
        chosen = rng.sample(ranked, min(count, len(ranked)))
        if other_domains and len(self.domains) > 1:
            foreign = self._other_domain_tool(keep, rng)
            if foreign is not None:
                chosen = (
                    [*chosen[: max(count - 1, 0)], foreign] if count > 1 else [*chosen, foreign]
                )
        return chosen

    def _related(self, name: str, rng: random.Random) -> list[str]:
        """Tools ranked by relatedness to ``name``, looked for in its domain in a large pool.

        Ranking all of a 10k-tool pool per scenario would cost seconds; a domain (or, for a
        very large one, a fixed-size random sample of it) holds the hard negatives anyway.
        """
        if len(self.tools) < LARGE_POOL:
            return self.sim.related(name)
        pool = self.domains.get(_domain(self.tools[name]), [])
        if len(pool) > RELATED_SAMPLE:
            pool = rng.sample(pool, RELATED_SAMPLE)
        return self.sim.related(name, [n for n in pool if n != name] or None)

    def _other_domain_tool(self, keep: list[str], rng: random.Random) -> str | None:
        own = {_domain(self.tools[n]) for n in keep}
        others = sorted(d for d in self.domains if d not in own)
        if not others:
            return None
        weights = [max(self.options.domain_weights.get(d, 1.0), 0.0) for d in others]
        if sum(weights) <= 0:
            return None
        domain = rng.choices(others, weights=weights)[0]
        candidates = [n for n in self.domains[domain] if n not in keep]
        return rng.choice(candidates) if candidates else None

    def _partner(self, name: str, rng: random.Random) -> str:
        ranked = self._related(name, rng)[:4]
        return rng.choice(ranked) if ranked else name

    # --- building scenarios --------------------------------------------------------------------

    async def _draft(self, name: str, rng: random.Random, avoid: list[dict] | None = None):
        return await self.drafter.draft(self.tools[name], rng, avoid)

    def _ask(self, drafted: DraftedCall, values: dict[str, Any] | None = None) -> dict[str, Any]:
        tool = self.tools[drafted.tool]
        return {
            "tool": tool.name,
            "description": tool.description,
            "values": drafted.arguments if values is None else values,
        }

    async def _build(self, index: int, category: str, target: str, rng: random.Random) -> Scenario:
        builder = getattr(self, f"_build_{category}")
        offered, turns, asks, sources, *extra = await builder(target, rng)
        rng.shuffle(offered)
        for name in offered:
            self.appearances[name] += 1
        if category == "irrelevance":
            self.appearances[target] += 1  # its request was written, just not offered
        return Scenario(
            id=self.scenario_id(index),
            category=category,  # type: ignore[arg-type]
            tools=offered,
            turns=turns,
            seed=rng.randrange(2**31),
            metadata={"asks": asks, "value_sources": sources, **(extra[0] if extra else {})},
        )

    def _call_turn(self, intent: str, calls: list, **extra: Any) -> ScenarioTurn:
        return ScenarioTurn(
            intent=intent, steps=[Label(kind="call", calls=calls), Label(kind="text")], **extra
        )

    async def _build_single(self, target: str, rng: random.Random):
        drafted = await self._draft(target, rng)
        tool = self.tools[target]
        turn = self._call_turn(_intent(tool), [label_call(tool, drafted.arguments)])
        return [target], [turn], [[self._ask(drafted)]], [drafted.source]

    async def _build_multiple(self, target: str, rng: random.Random):
        offered, turns, asks, sources = await self._build_single(target, rng)
        offered += self._distractors(
            [target], rng, self.options.max_distractors, other_domains=True
        )
        return offered, turns, asks, sources

    async def _build_parallel(self, target: str, rng: random.Random):
        tool = self.tools[target]
        drafted: list[DraftedCall] = []
        for _ in range(rng.randint(2, 3)):
            call = await self._draft(target, rng, [d.arguments for d in drafted])
            if call.arguments in [d.arguments for d in drafted]:
                break  # the tool has too few distinct argument values for another call
            drafted.append(call)
        labels = [label_call(tool, d.arguments) for d in drafted]
        turn = self._call_turn(f"{_intent(tool)} ({len(drafted)} times)", labels)
        return [target], [turn], [[self._ask(d) for d in drafted]], [d.source for d in drafted]

    async def _build_parallel_multiple(self, target: str, rng: random.Random):
        partner = next((n for n in self._related(target, rng)[:4] if n != target), None)
        names = [target, partner] if partner else [target]
        if partner and rng.random() < 0.3:
            third = next((n for n in self._related(partner, rng) if n not in names), None)
            if third:
                names.append(third)
        drafted = [await self._draft(name, rng) for name in names]
        labels = [label_call(self.tools[d.tool], d.arguments) for d in drafted]
        intent = " and ".join(_intent(self.tools[n]) for n in names)
        offered = list(names) + self._distractors(names, rng, 1, other_domains=True)
        turn = self._call_turn(intent, labels)
        return offered, [turn], [[self._ask(d) for d in drafted]], [d.source for d in drafted]

    async def _build_multi_step(self, target: str, rng: random.Random):
        pairs = [p for p in self.pairs if p[0].name == target]
        best = max(p[3] for p in pairs)
        producer, consumer, param, _ = rng.choice([p for p in pairs if p[3] == best])
        first = await self._draft(producer.name, rng)
        second = await self._draft(consumer.name, rng)
        second_args = dict(second.arguments)
        second_args[param] = [reference(0, 0, param)]
        told = {k: v for k, v in second.arguments.items() if k != param}
        turn = ScenarioTurn(
            intent=f"{_intent(producer)}, then use what it returns to {_intent(consumer, 0)}",
            steps=[
                Label(kind="call", calls=[label_call(producer, first.arguments)]),
                Label(kind="call", calls=[label_call(consumer, second_args)]),
                Label(kind="text"),
            ],
        )
        asks = [[self._ask(first), {**self._ask(second, told), "from_result": param}]]
        offered = [producer.name, consumer.name]
        offered += self._distractors(offered, rng, 1)
        return offered, [turn], asks, [first.source, second.source]

    async def _build_multi_turn(self, target: str, rng: random.Random):
        partner = self._partner(target, rng) if rng.random() < 0.8 else target
        turns, asks, sources = [], [], []
        avoid: list[dict] = []
        for name in (target, partner):
            drafted = await self._draft(name, rng, avoid if name == target else None)
            avoid.append(drafted.arguments)
            tool = self.tools[name]
            turns.append(self._call_turn(_intent(tool), [label_call(tool, drafted.arguments)]))
            asks.append([self._ask(drafted)])
            sources.append(drafted.source)
        offered = sorted({target, partner})
        offered += self._distractors(offered, rng, 1)
        return offered, turns, asks, sources

    async def _build_clarify(self, target: str, rng: random.Random):
        tool = self.tools[target]
        drafted = await self._draft(target, rng)
        withheld_name = rng.choice(
            _cleanly_withholdable(tool, drafted.arguments) or _withholdable(tool)
        )
        withheld = {withheld_name: drafted.arguments[withheld_name]}
        told = {k: v for k, v in drafted.arguments.items() if k != withheld_name}
        turn = ScenarioTurn(
            intent=_intent(tool),
            withheld=withheld,
            steps=[
                Label(kind="clarify", missing=[withheld_name]),
                Label(kind="call", calls=[label_call(tool, drafted.arguments)]),
                Label(kind="text"),
            ],
        )
        offered = [target, *self._distractors([target], rng, 1)]
        return offered, [turn], [[self._ask(drafted, told)]], [drafted.source]

    async def _build_irrelevance(self, target: str, rng: random.Random):
        near = self._near_misses(target, rng) if rng.random() < NEAR_MISS_SHARE else []
        candidates = near or sorted(self.sim.unrelated(target))
        if candidates:
            drafted = await self._draft(target, rng)
            count = min(len(candidates), rng.randint(1, max(1, self.options.max_distractors)))
            offered = rng.sample(candidates, count)
            intent = _intent(self.tools[target])
            asks = [[{**self._ask(drafted), "offered": False}]]
            sources = [drafted.source]
        else:
            names = sorted(self.tools)
            offered = rng.sample(names, min(len(names), rng.randint(1, 3)))
            intent = rng.choice(OFF_DOMAIN_REQUESTS)
            asks = [[{"tool": None, "description": intent, "values": {}, "offered": False}]]
            sources = ["builtin"]
        turn = ScenarioTurn(intent=intent, steps=[Label(kind="refuse")])
        return offered, [turn], asks, sources, {"near_miss": bool(near)}

    def _near_misses(self, target: str, rng: random.Random) -> list[str]:
        """Tools that share the request's vocabulary or API but do something else: the
        target's hard negatives with the target itself taken away, as when a tool set simply
        lacks the one operation asked for. Those too close to the target
        (:data:`NEAR_MISS_MAX_COSINE`) are left out, since they might serve the request."""
        return [
            name
            for name in self._related(target, rng)
            if self.sim.score(target, name) >= NEAR_MISS_MIN_SCORE
            and self.sim.cosine(target, name) < NEAR_MISS_MAX_COSINE
        ][: 2 * max(1, self.options.max_distractors)]


NEAR_MISS_SHARE = 0.5
"""Share of ``irrelevance`` scenarios that offer near misses rather than unrelated tools.
Why: with unrelated tools only, "no tool shares a word with the request" decides every
irrelevance scenario, and a model trained on them calls whatever tool looks related."""
NEAR_MISS_MIN_SCORE = 0.1
"""Relatedness (cosine plus the same-spec bonus) a near miss needs: it must look related."""
NEAR_MISS_MAX_COSINE = 0.45
"""Above this lexical cosine a tool may do what was asked (``smsSend`` for a request written
for ``smsSendBatch`` scores 0.53; ``FetchFactor`` for ``ListChallenge``, which cannot list,
0.57, so some safe ones are lost too): such tools are never offered as near misses."""


RELATED_SAMPLE = 400
"""Candidates ranked for hard negatives in a large pool (see ``Planner._related``)."""


def _domain(tool: Tool) -> str:
    """A refined registry's domain; tools from other sources share one unnamed domain."""
    return str(tool.metadata.get("domain") or "")


def _intent(tool: Tool, upper: int = 1) -> str:
    """The first sentence of a tool's description, as a task ("get the current weather")."""
    text = re.sub(r"\s*\([^()]*\)", "", tool.description or "").strip()
    text = re.split(r"(?<!e\.g)(?<!i\.e)(?<=[a-z0-9])\.\s", text)[0].rstrip(".:;, ")
    if not text:
        text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", tool.name).replace("_", " ").lower()
    if len(text) > 140:
        text = text[:140].rsplit(" ", 1)[0]
    return text[0].lower() + text[1:] if upper == 0 else text


async def plan_scenarios(
    tools: Sequence[Tool], options: PlanOptions, drafter: ArgumentDrafter | None = None
) -> Plan:
    """Plan ``options.n`` scenarios (plus coverage fill-ins) over ``tools``."""
    return await Planner(tools, options, drafter or ArgumentDrafter()).plan()
