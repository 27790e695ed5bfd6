"""Error-driven data expansion (LoopTool's EDDE): new scenarios that reproduce each mistake.

Each verified model error (the judges said the label stands) is read as a confusion:
the failing request, the model's wrong call and the error class (:mod:`tooldojo.loop.classify`).
:func:`expansion_spec` turns it into what to plan — which tools, which category, which tool
must be on offer — and synthesis' public planner (:func:`tooldojo.synth.planner.plan_scenarios`)
draws ``per_error`` new scenarios with new values and phrasing:

======================  ========================================================================
wrong_tool              the same pair of confusable tools offered together, target the right one
wrong_value             tools with a parameter of the same type (and format) as the wrong value
missing_arg             tools that require an argument of the same type as the one left out
extra_arg               tools with optional parameters, where adding one is the temptation
missed_parallel         parallel (one tool) or parallel_multiple (several) scenarios
called_when_should_not  irrelevance scenarios offering the tool it called (refuse), clarify
                        scenarios for that tool (clarify), or the same category (surplus calls)
no_call_when_should     the same category with the tools it should have called as targets
format                  the same category and tools
======================  ========================================================================

Every expanded scenario keeps the failing episode's writing style (the user simulator phrases
requests in a scenario's style) and carries ``metadata["edde"]``: the error class, the failing
request, the wrong call, the focus tool and parameter (a user simulator may read the request
there as a phrasing example). The loop's ``loop_stats.json`` counts expansions per class and
how they fare in the next iteration's probe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.loop.judge import JudgedRecord
from tooldojo.model import Label, Scenario, Tool, ToolCall, Trajectory
from tooldojo.synth.labels import ArgumentDrafter
from tooldojo.synth.planner import PlanOptions, plan_scenarios
from tooldojo.verify._match import check_call, check_param, shape_of

NEW_TOOLS = 4
"""How many other tools from the pool an expansion may add to the failing one."""


@dataclass
class ExpansionSpec:
    """What to plan for one error."""

    category: str
    tools: list[Tool]
    """The planner's registry for these scenarios."""
    targets: dict[str, float]
    """Tool weights: which tools the requests should be about (0: never the target)."""
    must_offer: list[str] = field(default_factory=list)
    """Tools added to every planned scenario's offer (the confusable one)."""
    focus_tool: str | None = None
    focus_param: str | None = None
    param_type: str | None = None


def _param_type(tool: Tool, param: str | None) -> str | None:
    """``type`` or ``type:format`` of a parameter (what "the same kind of value" means)."""
    if param is None:
        return None
    schema = tool.properties.get(param) or {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if not isinstance(kind, str):
        return None
    return f"{kind}:{schema['format']}" if schema.get("format") else kind


def _params_of_type(tool: Tool, wanted: str | None, *, required_only: bool = False) -> list[str]:
    names = tool.required if required_only else list(tool.properties)
    return [p for p in names if wanted is not None and _param_type(tool, p) == wanted]


def _focus(label: Label, calls: Sequence[ToolCall], tools: dict[str, Tool], error_class: str):
    """(tool, parameter) where the mistake sits: the first label call whose made call with the
    same name differs, and its first differing argument."""
    for want in label.calls:
        made = next((c for c in calls if c.name == want.name), None)
        tool = tools.get(want.name)
        if made is None or tool is None:
            continue
        if error_class == "missing_arg":
            required = [p for p, allowed in want.arguments.items() if "" not in allowed]
            missing = [p for p in (tool.required + required) if p not in made.arguments]
            if missing:
                return want.name, missing[0]
        elif error_class == "extra_arg":
            extra = [p for p in made.arguments if p not in want.arguments]
            if extra:
                return want.name, extra[0]
        elif error_class == "wrong_value":
            spec = shape_of(tool).params
            for param, value in made.arguments.items():
                if param in want.arguments and (
                    param not in spec or check_param(spec[param], value, want.arguments[param])
                ):
                    return want.name, param
        if check_call(shape_of(tool), made.name, made.arguments, want.arguments) is not None:
            return want.name, None
    first = label.calls[0].name if label.calls else None
    return first, None


def _others(registry: dict[str, Tool], keep: Iterable[str], fits: Any, key: str) -> list[Tool]:
    """Up to :data:`NEW_TOOLS` other tools that ``fits``, in an order seeded by ``key`` (so
    different errors bring different new tools)."""
    skip = set(keep)
    found = [t for name, t in registry.items() if name not in skip and fits(t)]
    found.sort(key=lambda t: hashlib.sha256(f"{key}|{t.name}".encode()).hexdigest())
    return found[:NEW_TOOLS]


def expansion_spec(
    record: JudgedRecord, source: Trajectory, registry: dict[str, Tool]
) -> ExpansionSpec:
    """What to plan so the new scenarios reproduce ``record``'s confusion (see the table)."""
    label = record.label or Label(kind="call")
    offered = {t.name: t for t in source.tools}
    everything = {**registry, **offered}
    targets = [c.name for c in label.calls if c.name in everything]
    made = [c.name for c in record.calls]
    category = source.category or "single"
    error = record.error_class or "format"
    same = ExpansionSpec(
        category=category,
        tools=list(offered.values()),
        targets={name: 1.0 for name in targets},
    )
    if error == "wrong_tool" and targets:
        right = targets[0]
        wrong = next((n for n in made if n not in targets and n in everything), None)
        if wrong is None:  # a tool that was never offered: the same offer, the right target
            return ExpansionSpec("multiple", list(offered.values()), {right: 1.0})
        pair = [everything[right], everything[wrong]]
        return ExpansionSpec(
            "multiple", pair, {right: 1.0, wrong: 0.0}, must_offer=[wrong], focus_tool=right
        )
    if error in ("wrong_value", "missing_arg", "extra_arg") and targets:
        tool_name, param = _focus(label, record.calls, everything, error)
        tool = everything[tool_name or targets[0]]
        kind = _param_type(tool, param)
        if error == "extra_arg":
            fits = lambda t: len(t.properties) > len(t.required)  # noqa: E731
        elif error == "missing_arg":
            fits = lambda t: bool(_params_of_type(t, kind, required_only=True))  # noqa: E731
        else:
            fits = lambda t: bool(_params_of_type(t, kind))  # noqa: E731
        others = _others(registry, [tool.name], fits, record.id)
        return ExpansionSpec(
            "single",
            [tool, *others],
            {tool.name: 2.0, **{t.name: 1.0 for t in others}},
            focus_tool=tool.name,
            focus_param=param,
            param_type=kind,
        )
    if error == "missed_parallel" and targets:
        if len(set(targets)) > 1:
            return ExpansionSpec(
                "parallel_multiple",
                [everything[n] for n in dict.fromkeys(targets)],
                {n: 1.0 for n in targets},
            )
        tool = everything[targets[0]]
        others = _others(registry, [tool.name], lambda t: bool(t.required), record.id)
        return ExpansionSpec(
            "parallel",
            [tool, *others],
            {tool.name: 2.0, **{t.name: 1.0 for t in others}},
            focus_tool=tool.name,
        )
    if error == "called_when_should_not":
        wrong = next((n for n in made if n in everything), None)
        if label.kind == "refuse":
            tools = list(offered.values())
            if wrong is not None and wrong not in offered:
                tools.append(everything[wrong])
            return ExpansionSpec(
                "irrelevance",
                tools,
                {wrong: 0.0} if wrong else {},
                must_offer=[wrong] if wrong else [],
                focus_tool=wrong,
            )
        if label.kind == "clarify":
            return ExpansionSpec(
                "clarify",
                list(offered.values()),
                {wrong: 1.0} if wrong in offered else {},
                focus_tool=wrong,
                focus_param=(label.missing or [None])[0],
            )
        return same
    return same


def _must_offer(scenario: Scenario, spec: ExpansionSpec) -> Scenario:
    """``scenario`` with the spec's confusable tools on offer (unless one is the request's
    own target in an irrelevance scenario, which would make it relevant)."""
    missing = [n for n in spec.must_offer if n not in scenario.tools]
    if not missing:
        return scenario
    if scenario.category == "irrelevance":
        asks = scenario.metadata.get("asks") or [[{}]]
        target = (asks[0] or [{}])[0].get("tool") if isinstance(asks[0], list) else None
        missing = [n for n in missing if n != target]
    return scenario.model_copy(update={"tools": [*scenario.tools, *missing]})


def _request(source: Trajectory, turn: int) -> str:
    """The user message the failing turn answered."""
    seen, last_user = -1, ""
    for message in source.messages:
        if message.role == "user":
            last_user = message.content or ""
        elif message.role == "assistant":
            seen += 1
            if seen == turn:
                break
    return last_user


async def run_expand(
    judged_file: Path,
    pool: Iterable[Trajectory],
    out: Path,
    *,
    per_error: int,
    max_total: int,
    iteration: int,
    seed: int,
    drafter: ArgumentDrafter | None = None,
    registry: Iterable[Tool] = (),
) -> dict[str, int]:
    """Plan new scenarios for each ``model_wrong`` decision into ``out`` (resumes by parent).

    ``registry`` adds tools beyond the failing trajectory's (new tools with the same kind of
    parameter); the pool's own tools always count.
    """
    pool = list(pool)
    by_id = {t.id: t for t in pool}
    tools: dict[str, Tool] = {t.name: t for trajectory in pool for t in trajectory.tools}
    tools.update({t.name: t for t in registry})
    done_parents = existing_ids(out, "parent_id")
    errors = [r for r in read_jsonl(judged_file, JudgedRecord) if r.decision == "model_wrong"]
    planned = len(existing_ids(out))
    counts: dict[str, int] = {"errors": len(errors)}
    for index, record in enumerate(errors):
        if planned >= max_total or per_error == 0:
            break
        if record.id in done_parents or record.trajectory_id not in by_id:
            continue
        source = by_id[record.trajectory_id]
        spec = expansion_spec(record, source, tools)
        options = PlanOptions(
            n=min(per_error, max_total - planned),
            seed=seed * 1000 + iteration * 100 + index,
            mix={spec.category: 1.0},
            tool_weights=spec.targets,
            min_per_tool=0,
            id_prefix=f"x{iteration:03d}-{index:03d}-",
            strict=False,
        )
        try:
            plan = await plan_scenarios(spec.tools, options, drafter)
        except ToolDojoError:
            # The conditioned category is impossible with these tools (e.g. clarify needs a
            # withholdable argument): fall back to the source's own category and tools.
            fallback = {"mix": {source.category or "single": 1.0}, "tool_weights": {}}
            try:
                plan = await plan_scenarios(
                    list({t.name: t for t in source.tools}.values()),
                    replace(options, **fallback),
                    drafter,
                )
            except ToolDojoError:
                counts["unplannable"] = counts.get("unplannable", 0) + 1
                continue
        condition = {
            "error_class": record.error_class,
            "request": _request(source, record.turn),
            "wrong_calls": [c.model_dump(mode="json") for c in record.calls],
            "wrong_text": record.text[:300],
            "focus_tool": spec.focus_tool,
            "focus_param": spec.focus_param,
            "param_type": spec.param_type,
        }
        # The failing request's phrasing pattern: its writing style carries over (the user
        # simulator writes in a scenario's style); the request itself is in metadata.edde.
        style = str(source.metadata.get("style") or "")
        scenarios: list[Scenario] = [
            _must_offer(s, spec).model_copy(
                update={
                    "parent_id": record.id,
                    "style": style or s.style,
                    "metadata": {**s.metadata, "expanded_from": record.id, "edde": condition},
                }
            )
            for s in plan.scenarios[:per_error]
        ]
        append_jsonl(out, scenarios)
        planned += len(scenarios)
        key = f"class_{record.error_class or 'unknown'}"
        counts[key] = counts.get(key, 0) + len(scenarios)
    counts["scenarios"] = len(existing_ids(out))
    return counts
