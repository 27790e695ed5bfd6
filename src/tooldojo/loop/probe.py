"""Greedy capability probing (LoopTool's GCP): where does the new model still fail?

The trained model answers the labelled assistant turns of the training pool and of the
held-out split with greedy decoding and no constraint (we measure what it does on its own).
Each answer is classified by :func:`tooldojo.loop.classify.classify_error`, which matches
calls with verification's label semantics.

Honesty rules (issue 15): call turns and no-call decisions (refuse, clarify) are two
separate scores, never mixed; prose on a call turn is wrong; a no-call turn is right only
when the model made no call *and* its text passes the turns gate's checks for a refusal or a
clarifying question (otherwise a model that never calls gets every no-call turn right with
whatever it writes: the base model's "You can delete 44." counted as a refusal). Final prose
answers after tool results (label ``text``) are not probed: they teach no tool use, and the
loop's progress is measured on calls and decisions.

The probe is greedy over the whole pool up to ``limit`` turns per split; a larger pool is
sampled stratified by (category, target tool), and the summary says which it was.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field

from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.llm.base import ChatModel, SamplingParams
from tooldojo.loop.classify import ErrorClass, TurnKind, classify_error, turn_kind
from tooldojo.model import Label, Message, Tool, ToolCall, Trajectory
from tooldojo.train.data import TurnSample, turn_samples
from tooldojo.verify.content import turn_content_errors
from tooldojo.verify.label import UnresolvedReference, resolved_label_calls, shapes_of
from tooldojo.verify.schema import argument_error
from tooldojo.verify.turns import assistant_turns

PROBED_KINDS = ("call", "refuse", "clarify")
"""Label kinds the probe scores (see the module docstring for why ``text`` is not one)."""


class ProbeRecord(BaseModel):
    """One probed turn: what the label wanted, what the model did, and whether it matched."""

    id: str
    trajectory_id: str
    turn: int
    split: str
    category: str
    label: Label
    kind: TurnKind = "call"
    """``call`` (the label expects calls) or ``no_call`` (refuse, clarify)."""
    calls: list[ToolCall] = Field(default_factory=list)
    text: str = ""
    correct: bool
    error_class: ErrorClass | None = None
    """The mistake's class (:mod:`tooldojo.loop.classify`); ``None`` when correct."""
    reason: str = ""
    schema_ok: bool = False
    """The answer made at least one call and every call names an offered tool with
    schema-valid arguments (the schema gate)."""
    near_miss: bool = False
    """An irrelevance turn whose tools look related to the request but cannot serve it
    (``synth.planner.NEAR_MISS_SHARE``): scored also apart, as the harder refusal."""

    @property
    def target_tools(self) -> list[str]:
        """Tools the label asks for; ``(no call)`` for refuse/clarify turns."""
        names = sorted({call.name for call in self.label.calls})
        return names or ["(no call)"]


def sample_id(sample: TurnSample) -> str:
    return f"{sample.trajectory_id}#{sample.turn}"


def judge_answer(sample: TurnSample, answer: Message) -> tuple[ErrorClass | None, str]:
    """The class of the answer's mistake (``None``: correct) and a readable reason.

    Label references (``$result``) resolve against the recorded history.
    """
    label = sample.label
    assert label is not None
    trajectory = Trajectory(
        id=sample.trajectory_id, tools=sample.tools, messages=[*sample.history, answer]
    )
    turns = assistant_turns(trajectory)
    turn = turns[-1]
    expected = None
    if label.kind == "call":
        try:
            expected = resolved_label_calls(label, turns, trajectory.messages, sample.tools)
        except UnresolvedReference as error:
            return "wrong_value", f"label reference unresolved: {error}"
    error_class = classify_error(
        label,
        turn.calls,
        turn.text,
        shapes_of(sample.tools),
        parse_error=turn.parse_error,
        expected=expected,
    )
    if error_class is None and label.kind != "call":
        turn.label = label
        problems = turn_content_errors(turn, trajectory)
        if problems:
            codes = ", ".join(dict.fromkeys(code for code, _ in problems))
            return "poor_answer", f"poor_answer: {codes} (no call, as expected)"
    if error_class is None:
        return None, "matches the label"
    made = ", ".join(call.name for call in turn.calls) or "no call"
    wanted = ", ".join(call.name for call in label.calls) or label.kind
    detail = f": {turn.parse_error}" if turn.parse_error else ""
    return error_class, f"{error_class}{detail} (expected {wanted}; got {made})"


def _strata_key(sample: TurnSample) -> tuple[str, str]:
    label = sample.label
    assert label is not None
    tools = sorted({call.name for call in label.calls}) or [label.kind]
    return sample.category, tools[0]


def stratified_sample(samples: list[TurnSample], limit: int, seed: int) -> list[TurnSample]:
    """``limit`` samples spread over categories, then over target tools within each, in
    proportion to their size (largest remainder), each stratum drawn at random; the whole
    list when it fits.

    Two levels, with ties broken at random: over (category, tool) strata at once, most strata
    of a corpus of thousands of tools hold one turn, so their quotas all tied below one and
    the tie went to the alphabetically first keys. The scale loop's 1,000 of 1,767 training
    turns held 143 clarify and 327 multi_turn turns but one single and no parallel one."""
    if len(samples) <= limit:
        return list(samples)
    rng = random.Random(f"probe|{seed}")
    strata: dict[str, dict[str, list[TurnSample]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        category, tool = _strata_key(sample)
        strata[category][tool].append(sample)
    sizes = {category: sum(map(len, tools.values())) for category, tools in strata.items()}
    chosen: list[TurnSample] = []
    for category, share in _largest_remainder(sizes, limit, rng).items():
        tools = strata[category]
        quota = _largest_remainder({tool: len(turns) for tool, turns in tools.items()}, share, rng)
        for tool, count in quota.items():
            chosen += rng.sample(tools[tool], count)
    return chosen


def _largest_remainder(sizes: dict[str, int], total: int, rng: random.Random) -> dict[str, int]:
    """``total`` split over ``sizes`` in proportion (Hamilton's method), in sorted key order;
    the units left after the floors go to the largest remainders, ties in random order."""
    keys = sorted(sizes)
    whole = sum(sizes.values())
    exact = {key: total * sizes[key] / whole for key in keys}
    quota = {key: math.floor(value) for key, value in exact.items()}
    order = sorted(keys, key=lambda key: (-(exact[key] - quota[key]), rng.random()))
    for key in order[: total - sum(quota.values())]:
        quota[key] += 1
    return quota


def probeable(trajectories: Iterable[Trajectory]) -> list[TurnSample]:
    """Every turn the probe can score: labelled call, refuse and clarify turns."""
    return [
        s
        for s in turn_samples(trajectories)
        if s.label is not None and s.label.kind in PROBED_KINDS
    ]


def probe_samples(trajectories: Iterable[Trajectory], limit: int, seed: int) -> list[TurnSample]:
    """The turns to probe: all of them, or a stratified sample of ``limit``."""
    return stratified_sample(probeable(trajectories), limit, seed)


def breaks_schema(calls: Sequence[ToolCall], tools: Sequence[Tool]) -> bool:
    """Whether some call names a tool not in ``tools`` or breaks its schema (the schema
    gate's test): the probe's ``schema_ok``, and the judge's cases the gates decide."""
    offered = {tool.name: tool for tool in tools}
    return any(
        call.name not in offered or argument_error(offered[call.name], call.arguments)
        for call in calls
    )


async def _probe_one(model: ChatModel, sample: TurnSample, split: str, max_tokens: int):
    completion = await model.complete(
        sample.history,
        sample.tools,
        sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
    )
    label = sample.label
    assert label is not None
    if not completion.ok:
        error_class, reason = "format", f"format: {completion.error}"
    else:
        error_class, reason = judge_answer(sample, completion.as_message())
    schema_ok = bool(completion.tool_calls) and not breaks_schema(
        completion.tool_calls, sample.tools
    )
    return ProbeRecord(
        id=sample_id(sample),
        schema_ok=schema_ok,
        trajectory_id=sample.trajectory_id,
        turn=sample.turn,
        split=split,
        category=sample.category,
        label=label,
        kind=turn_kind(label),
        calls=completion.tool_calls,
        text=completion.text,
        correct=error_class is None,
        error_class=error_class,
        reason=reason,
    )


async def run_probe(
    model: ChatModel,
    pools: dict[str, list[Trajectory]],
    out: Path,
    *,
    limit: int,
    seed: int,
    max_tokens: int = 256,
    concurrency: int = 1,
    progress: Any = None,
) -> dict[str, int]:
    """Probe each split's sample into ``out`` (append-only, resumes by id).

    ``progress`` is called once with ``total=`` (the turns left to probe), then once per turn.

    Returns counts, among them ``<split>_pool`` (probeable turns in the split) and
    ``<split>_sample`` (turns chosen), so the size of the sample is on record.
    """
    done = existing_ids(out)
    counts: dict[str, int] = {}
    todo: list[tuple[str, TurnSample]] = []
    for split, trajectories in pools.items():
        candidates = probeable(trajectories)
        chosen = stratified_sample(candidates, limit, seed)
        counts[f"{split}_pool"] = len(candidates)
        counts[f"{split}_sample"] = len(chosen)
        todo += [(split, sample) for sample in chosen if sample_id(sample) not in done]
    limiter = anyio.Semaphore(max(1, concurrency))
    if progress is not None:
        progress(total=len(todo))

    near_misses = {
        t.id for trajectories in pools.values() for t in trajectories if t.metadata.get("near_miss")
    }

    async def one(split: str, sample: TurnSample) -> None:
        async with limiter:
            record = await _probe_one(model, sample, split, max_tokens)
        record.near_miss = sample.trajectory_id in near_misses
        append_jsonl(out, [record])
        if progress is not None:
            progress()

    async with anyio.create_task_group() as group:
        for split, sample in todo:
            group.start_soon(one, split, sample)
    # Nothing to probe (no trajectory passed) is an empty file, not a missing one: the loop
    # records every stage's outputs, and a missing file crashed it.
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(exist_ok=True)
    records = list(read_jsonl(out, ProbeRecord))
    for kind in ("call", "no_call"):
        mine = [r for r in records if r.kind == kind]
        counts[f"{kind}_probed"] = len(mine)
        counts[f"{kind}_correct"] = sum(r.correct for r in mine)
    return counts


def _cell(correct: int, total: int) -> dict[str, Any]:
    return {"correct": correct, "total": total, "accuracy": correct / total if total else 0.0}


def accuracy_table(
    records: Iterable[ProbeRecord], sample: dict[str, int] | None = None
) -> dict[str, Any]:
    """The probe's figures, call turns and no-call decisions always apart:

    - ``kind``: ``<split>/call`` and ``<split>/no_call`` accuracy;
    - ``category``: ``<split>/<kind>/<category>``, near-miss irrelevance turns also under
      ``<split>/no_call/irrelevance (near miss)``; ``tool``: ``<split>/<tool>`` (call turns);
    - ``decision``: ``<split>/refuse`` and ``<split>/clarify`` (the no-call decisions);
    - ``error_class``: ``<split>/<kind>/<class>`` counts, with their share of that kind's turns;
    - ``schema_pass``: per split, the schema-gate pass rate of call turns;
    - ``sample``: per split, probeable turns in the pool, turns probed, whether stratified.
    """
    tally: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    errors: dict[str, int] = defaultdict(int)
    for record in records:
        prefix = f"{record.split}/{record.kind}"
        keys = [("kind", prefix), ("category", f"{prefix}/{record.category}")]
        if record.near_miss:
            keys.append(("category", f"{prefix}/{record.category} (near miss)"))
        if record.kind == "call":
            keys += [("tool", f"{record.split}/{tool}") for tool in record.target_tools]
            keys.append(("schema_pass", record.split))
        else:
            keys.append(("decision", f"{record.split}/{record.label.kind}"))
        for table, key in keys:
            cell = tally[table][key]
            cell[0] += int(record.schema_ok if table == "schema_pass" else record.correct)
            cell[1] += 1
        if record.error_class is not None:
            errors[f"{prefix}/{record.error_class}"] += 1
    out: dict[str, Any] = {
        table: {key: _cell(c, n) for key, (c, n) in sorted(cells.items())}
        for table, cells in tally.items()
    }
    out["error_class"] = {
        key: {"count": n, "share": n / tally["kind"][key.rsplit("/", 1)[0]][1]}
        for key, n in sorted(errors.items())
    }
    if sample is not None:
        splits = sorted({k.rsplit("_", 1)[0] for k in sample if k.endswith("_pool")})
        out["sample"] = {
            split: {
                "pool_turns": sample[f"{split}_pool"],
                "probed": sample[f"{split}_sample"],
                "stratified": sample[f"{split}_sample"] < sample[f"{split}_pool"],
            }
            for split in splits
        }
    return out
