"""Greedy capability probing (LoopTool's GCP): where does the new model still fail?

The trained model answers every labelled assistant turn of the training pool and of the
held-out split with greedy decoding and no constraint (we measure what it does on its
own). Each answer is checked with verification's label gate; the per-category and
per-tool accuracies steer the next iteration.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field

from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.llm.base import ChatModel, SamplingParams
from tooldojo.model import Label, Message, ToolCall, Trajectory
from tooldojo.train.data import TurnSample, turn_samples
from tooldojo.verify.label import shapes_of, turn_label_error
from tooldojo.verify.schema import argument_errors
from tooldojo.verify.turns import assistant_turns


class ProbeRecord(BaseModel):
    """One probed turn: what the label wanted, what the model did, and whether it matched."""

    id: str
    trajectory_id: str
    turn: int
    split: str
    category: str
    label: Label
    calls: list[ToolCall] = Field(default_factory=list)
    text: str = ""
    correct: bool
    reason: str = ""
    schema_ok: bool = False
    """The answer made at least one call and every call names an offered tool with
    schema-valid arguments (the schema gate)."""

    @property
    def target_tools(self) -> list[str]:
        """Tools the label asks for; ``(no call)`` for refuse/clarify/text turns."""
        names = sorted({call.name for call in self.label.calls})
        return names or ["(no call)"]


def sample_id(sample: TurnSample) -> str:
    return f"{sample.trajectory_id}#{sample.turn}"


def judge_answer(sample: TurnSample, answer: Message) -> tuple[bool, str]:
    """Label-gate verdict for one answered turn (label references resolve on the history)."""
    trajectory = Trajectory(
        id=sample.trajectory_id, tools=sample.tools, messages=[*sample.history, answer]
    )
    turns = assistant_turns(trajectory)  # earlier turns: the calls references resolve against
    turns[-1].label = sample.label
    if turns[-1].parse_error:
        return False, f"format: {turns[-1].parse_error}"
    error = turn_label_error(turns[-1], shapes_of(sample.tools), turns, trajectory.messages)
    return error is None, error or "matches the label"


def probe_samples(trajectories: Iterable[Trajectory], limit: int, seed: int) -> list[TurnSample]:
    """Labelled turns, a deterministic sample of at most ``limit``."""
    samples = [s for s in turn_samples(trajectories) if s.label is not None]
    if len(samples) > limit:
        samples = random.Random(seed).sample(samples, limit)
    return samples


async def _probe_one(model: ChatModel, sample: TurnSample, split: str, max_tokens: int):
    completion = await model.complete(
        sample.history,
        sample.tools,
        sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
    )
    label = sample.label
    assert label is not None
    if not completion.ok:
        correct, reason = False, f"format: {completion.error}"
    else:
        correct, reason = judge_answer(sample, completion.as_message())
    offered = {tool.name: tool for tool in sample.tools}
    schema_ok = bool(completion.tool_calls) and all(
        call.name in offered and argument_errors(offered[call.name], call.arguments) is None
        for call in completion.tool_calls
    )
    return ProbeRecord(
        id=sample_id(sample),
        schema_ok=schema_ok,
        trajectory_id=sample.trajectory_id,
        turn=sample.turn,
        split=split,
        category=sample.category,
        label=label,
        calls=completion.tool_calls,
        text=completion.text,
        correct=correct,
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
    """Probe each split's sample into ``out`` (append-only, resumes by id)."""
    done = existing_ids(out)
    todo = [
        (split, sample)
        for split, trajectories in pools.items()
        for sample in probe_samples(trajectories, limit, seed)
        if sample_id(sample) not in done
    ]
    limiter = anyio.Semaphore(max(1, concurrency))

    async def one(split: str, sample: TurnSample) -> None:
        async with limiter:
            record = await _probe_one(model, sample, split, max_tokens)
        append_jsonl(out, [record])
        if progress is not None:
            progress()

    async with anyio.create_task_group() as group:
        for split, sample in todo:
            group.start_soon(one, split, sample)
    records = list(read_jsonl(out, ProbeRecord))
    return {"probed": len(records), "correct": sum(r.correct for r in records)}


def accuracy_table(records: Iterable[ProbeRecord]) -> dict[str, Any]:
    """Accuracy per split, per category and per target tool (with counts), and per split the
    schema-gate pass rate of turns whose label is a call."""
    tally: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for record in records:
        keys = [("split", record.split), ("category", f"{record.split}/{record.category}")]
        keys += [("tool", f"{record.split}/{tool}") for tool in record.target_tools]
        for kind, key in keys:
            cell = tally[kind][key]
            cell[0] += int(record.correct)
            cell[1] += 1
        if record.label.kind == "call":
            cell = tally["schema_pass"][record.split]
            cell[0] += int(record.schema_ok)
            cell[1] += 1
    return {
        kind: {
            key: {"correct": c, "total": n, "accuracy": c / n}
            for key, (c, n) in sorted(cells.items())
        }
        for kind, cells in tally.items()
    }
