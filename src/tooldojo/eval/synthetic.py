"""Held-out evaluation on our own data, scored by verification's gates.

Every assistant turn of every ``split == "heldout"`` trajectory is one test: the model gets
the recorded history before that turn and the trajectory's tools, answers once (greedy), and
its answer passes when it clears the format, schema and label gates of
:mod:`tooldojo.verify` (the label gate compares calls with BFCL semantics), and a text answer
(a refusal, a clarifying question, a final answer) the turns gate's checks of its content: no
call alone is no right answer. One JSONL line per turn, so a killed run resumes; accuracy per
category and overall.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from tooldojo.errors import ToolDojoError
from tooldojo.eval.models import EvalModel
from tooldojo.jsonl import append_jsonl, iter_jsonl_dicts, read_jsonl
from tooldojo.llm.base import SamplingParams
from tooldojo.model import Label, Trajectory, utc_now
from tooldojo.verify import format_gate, schema_gate
from tooldojo.verify.content import turn_content_errors
from tooldojo.verify.label import shapes_of, turn_label_problem
from tooldojo.verify.turns import Turn, assistant_turns


class TurnResult(BaseModel):
    """One held-out assistant turn answered by the model and judged by the gates."""

    id: str
    trajectory_id: str
    turn: int
    category: str
    kind: TurnKind = "call"
    model: str
    passed: bool
    failed_gate: str | None = None
    reason: str = ""
    text: str = ""
    calls: list[dict[str, Any]] = Field(default_factory=list)
    latency_s: float = 0.0
    created_at: str = Field(default_factory=utc_now)


TurnKind = Literal["call", "no_call", "text"]
KINDS: tuple[TurnKind, ...] = ("call", "no_call", "text")


def turn_kind(label: Label) -> TurnKind:
    """``call`` for calls, ``no_call`` for refuse and clarify, ``text`` for final answers."""
    if label.kind == "call":
        return "call"
    return "text" if label.kind == "text" else "no_call"


@dataclass
class SyntheticSettings:
    concurrency: int = 4
    max_tokens: int = 512
    limit: int | None = None
    """At most this many held-out trajectories (in file order)."""


def heldout_trajectories(path: str | Path, limit: int | None = None) -> list[Trajectory]:
    path = Path(path)
    if not path.is_file():
        raise ToolDojoError(f"{path}: file not found")
    chosen = [t for t in read_jsonl(path, Trajectory) if t.split == "heldout"]
    if not chosen:
        raise ToolDojoError(f"{path}: no trajectory has split 'heldout'")
    return chosen[:limit] if limit else chosen


def judge_turn(
    trajectory: Trajectory, turns: list[Turn], index: int, answer: Any
) -> tuple[bool, str | None, str]:
    """Gates on the model's answer in place of recorded turn ``index``: (passed, gate, why)."""
    turn = Turn(
        index=index,
        message_index=turns[index].message_index,
        calls=list(answer.tool_calls),
        text=answer.text,
        label=turns[index].label,
        parse_error=answer.error,
    )
    for gate in (format_gate([turn]), schema_gate([turn], trajectory.tools)):
        if not gate.passed:
            return False, gate.gate, gate.reason
    replaced = [*turns[:index], turn, *turns[index + 1 :]]
    tools = trajectory.tools
    problem = turn_label_problem(turn, shapes_of(tools), replaced, trajectory.messages, tools)
    if problem is not None:
        return False, "label", problem[1]
    problems = turn_content_errors(turn, trajectory)
    if problems:
        return False, "turns", "; ".join(message for _, message in problems)
    return True, None, "passes format, schema, label and turns"


async def run_synthetic(
    evaluated: EvalModel,
    data: str | Path,
    results_path: str | Path,
    settings: SyntheticSettings,
    on_result: Callable[[TurnResult], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``evaluated`` on the held-out turns of ``data``; returns the summary."""
    results_path = Path(results_path)
    trajectories = heldout_trajectories(data, settings.limit)
    done: dict[str, TurnResult] = {}
    for number, row in iter_jsonl_dicts(results_path):
        result = TurnResult.model_validate(row)
        if result.model != evaluated.name:
            raise ToolDojoError(
                f"{results_path} at line {number}: holds results of {result.model!r}, not "
                f"{evaluated.name!r}; choose another --out"
            )
        done[result.id] = result
    sampling = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens)
    limiter = anyio.CapacityLimiter(settings.concurrency)
    tests: list[tuple[Trajectory, list[Turn], int]] = []
    for trajectory in trajectories:
        turns = assistant_turns(trajectory)
        tests.extend((trajectory, turns, k) for k in range(len(turns)) if turns[k].label)
    started = time.perf_counter()

    async def worker(trajectory: Trajectory, turns: list[Turn], index: int) -> None:
        history = trajectory.messages[: turns[index].message_index]
        async with limiter:
            begun = time.perf_counter()
            answer = await evaluated.model.complete(history, trajectory.tools, sampling=sampling)
        passed, gate, reason = judge_turn(trajectory, turns, index, answer)
        result = TurnResult(
            id=f"{trajectory.id}#{index}",
            trajectory_id=trajectory.id,
            turn=index,
            category=trajectory.category or "unknown",
            kind=turn_kind(turns[index].label),
            model=evaluated.name,
            passed=passed,
            failed_gate=gate,
            reason=reason,
            text=answer.text,
            calls=[{"name": c.name, "arguments": c.arguments} for c in answer.tool_calls],
            latency_s=round(time.perf_counter() - begun, 4),
        )
        append_jsonl(results_path, [result])
        done[result.id] = result
        if on_result is not None:
            on_result(result)

    async with anyio.create_task_group() as group:
        for trajectory, turns, index in tests:
            if f"{trajectory.id}#{index}" not in done:
                group.start_soon(worker, trajectory, turns, index)

    results = [done[f"{t.id}#{k}"] for t, _, k in tests]
    return synthetic_summary(evaluated, results, time.perf_counter() - started, results_path)


def _score(rows: list[TurnResult]) -> dict[str, Any]:
    passed = sum(r.passed for r in rows)
    return {
        "accuracy": passed / len(rows) if rows else None,
        "passed": passed,
        "total": len(rows),
        "failed_gates": dict(Counter(r.failed_gate for r in rows if not r.passed)),
    }


def synthetic_summary(
    evaluated: EvalModel, results: list[TurnResult], elapsed: float, path: Path
) -> dict[str, Any]:
    """Scores per kind, and per category within each kind; kinds are never pooled."""
    kinds = {kind: _score([r for r in results if r.kind == kind]) for kind in KINDS}
    categories: dict[str, Any] = {}
    for category in sorted({r.category for r in results}):
        mine = [r for r in results if r.category == category]
        categories[category] = {
            kind: _score(rows) for kind in KINDS if (rows := [r for r in mine if r.kind == kind])
        }
    return {
        "benchmark": "tooldojo held-out (split == heldout), gates: format, schema, label, turns",
        "model": evaluated.name,
        "model_spec": evaluated.spec,
        "mode": f"native tools ({evaluated.tool_format})",
        "turns": len(results),
        "accuracy": kinds["call"]["accuracy"],
        "accuracy_of": "call turns only; no_call and text turns are scored apart in kinds",
        "kinds": kinds,
        "categories": categories,
        "results_file": str(path),
        "elapsed_s": round(elapsed, 2),
    }
