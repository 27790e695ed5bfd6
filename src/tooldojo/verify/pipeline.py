"""Running the gates in order over trajectories, resumably, and counting the funnel.

Gates run in the fixed order format → schema → label → execution → agreement → judge and
stop at the first failure, so cheap deterministic gates filter before costly ones.
``verify_file`` appends one verified trajectory per line and skips ids already in the
output, so a killed run resumes without losing or duplicating work; the output's
``.gates.json`` stamp (gates, options, code) tells a resume from verdicts of other gates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tooldojo.errors import ToolDojoError
from tooldojo.hashing import source_digest
from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl, write_json_atomic
from tooldojo.llm.base import ChatModel
from tooldojo.llm.codecs import DEFAULT_CODEC
from tooldojo.model import GATES, Trajectory, Verdict
from tooldojo.verify.agreement import agreement_gate
from tooldojo.verify.content import turns_gate
from tooldojo.verify.execution import CallerFactory, Consistency, execution_gate
from tooldojo.verify.format import format_gate
from tooldojo.verify.judge import judge_gate
from tooldojo.verify.label import label_gate
from tooldojo.verify.requests import request_gate
from tooldojo.verify.schema import schema_gate
from tooldojo.verify.turns import assistant_turns

DEFAULT_GATES = ("format", "schema", "label", "execution", "request", "turns")
"""The gates that need nothing but the trajectory itself (``execution`` without an executor
reads the recorded results only)."""


@dataclass
class VerifyOptions:
    """Which gates to run and what the costly ones need."""

    gates: Sequence[str] = DEFAULT_GATES
    codec: str = DEFAULT_CODEC
    """How assistant text without ``tool_calls`` is parsed."""
    executor: CallerFactory | None = None
    consistency: Consistency = "exact"
    agreement_model: ChatModel | None = None
    agreement_k: int = 3
    agreement_threshold: float = 2 / 3
    agreement_temperature: float = 0.8
    judges: Sequence[ChatModel] = field(default_factory=tuple)
    judge_consensus: float = 0.5

    def ordered_gates(self) -> list[str]:
        unknown = [g for g in self.gates if g not in GATES]
        if unknown:
            raise ToolDojoError(
                f"unknown gate(s) {', '.join(unknown)}; choose from {', '.join(GATES)}"
            )
        if "agreement" in self.gates and self.agreement_model is None:
            raise ToolDojoError("the agreement gate needs an assistant model")
        if "judge" in self.gates and not self.judges:
            raise ToolDojoError("the judge gate needs at least one judge model")
        return [g for g in GATES if g in self.gates]


async def verify_trajectory(trajectory: Trajectory, options: VerifyOptions) -> Trajectory:
    """A copy of ``trajectory`` with the verdicts of the gates run and ``passed`` set."""
    turns = assistant_turns(trajectory, options.codec)
    verdicts: list[Verdict] = []
    for gate in options.ordered_gates():
        if gate == "format":
            verdict = format_gate(turns)
        elif gate == "schema":
            verdict = schema_gate(turns, trajectory.tools)
        elif gate == "label":
            verdict = label_gate(turns, trajectory.tools, trajectory.labels, trajectory.messages)
        elif gate == "request":
            verdict = request_gate(turns, trajectory)
        elif gate == "turns":
            verdict = turns_gate(turns, trajectory)
        elif gate == "execution":
            verdict = await execution_gate(turns, trajectory, options.executor, options.consistency)
        elif gate == "agreement":
            assert options.agreement_model is not None
            verdict = await agreement_gate(
                turns,
                trajectory,
                options.agreement_model,
                k=options.agreement_k,
                threshold=options.agreement_threshold,
                temperature=options.agreement_temperature,
                codec=options.codec,
            )
        else:
            verdict = await judge_gate(
                trajectory, options.judges, consensus=options.judge_consensus
            )
        verdicts.append(verdict)
        if not verdict.passed:
            break
    passed = bool(verdicts) and all(v.passed for v in verdicts)
    return trajectory.model_copy(update={"verdicts": verdicts, "passed": passed})


@dataclass
class VerifyRun:
    """What one ``verify_file`` call did."""

    verified: int = 0
    passed: int = 0
    skipped: int = 0
    stale: Path | None = None
    """Where earlier output went that other gates, options or code had written."""


def gates_stamp(options: VerifyOptions) -> dict[str, object]:
    """What the verdicts depend on: the gates, the options that change them, and the code.

    Why: resuming by id alone kept verdicts of older gates. A verify of the scale run after
    a new ``junk_result`` check counted 578 passed, 8 of them with the values it fails.
    """
    return {
        "gates": options.ordered_gates(),
        "codec": options.codec,
        "consistency": options.consistency,
        "replay": options.executor is not None,
        "agreement": [options.agreement_k, options.agreement_threshold]
        if "agreement" in options.gates
        else None,
        "judges": [judge.name for judge in options.judges],
        "code": source_digest(),
    }


def _stamp_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".gates.json")


def _start_output(out_path: Path, stamp: dict[str, object]) -> Path | None:
    """Stamp ``out_path`` for this run; earlier output with another stamp (or none) moves
    to ``<out>.stale`` first, returned. A resume with the same stamp keeps its output."""
    stamp_path = _stamp_path(out_path)
    moved = None
    if out_path.exists() and out_path.stat().st_size:
        try:
            before = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            before = None
        if before == stamp:
            return None
        moved = out_path.with_name(out_path.name + ".stale")
        out_path.replace(moved)
    write_json_atomic(stamp_path, stamp)
    return moved


async def verify_file(
    in_path: str | Path,
    out_path: str | Path,
    options: VerifyOptions,
    on_done: Callable[[Trajectory], None] | None = None,
) -> VerifyRun:
    """Verify every trajectory of ``in_path`` not yet in ``out_path``, appending each result."""
    options.ordered_gates()  # fail fast on bad options, before any work
    if not Path(in_path).exists():
        raise ToolDojoError(f"{in_path}: no such file")
    out_path = Path(out_path)
    run = VerifyRun(stale=_start_output(out_path, gates_stamp(options)))
    done = existing_ids(out_path)
    for trajectory in read_jsonl(in_path, Trajectory):
        if trajectory.id in done:
            run.skipped += 1
            continue
        verified = await verify_trajectory(trajectory, options)
        append_jsonl(out_path, [verified])
        done.add(trajectory.id)
        run.verified += 1
        run.passed += bool(verified.passed)
        if on_done is not None:
            on_done(verified)
    return run


@dataclass
class FunnelRow:
    """How many trajectories of one category reached and passed each gate."""

    total: int = 0
    reached: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passed_all: int = 0


def funnel(trajectories: Iterable[Trajectory]) -> dict[str, FunnelRow]:
    """Per category (and ``"all"``): trajectories reaching and passing each gate."""
    rows: dict[str, FunnelRow] = defaultdict(FunnelRow)
    for trajectory in trajectories:
        for key in (trajectory.category or "unknown", "all"):
            row = rows[key]
            row.total += 1
            row.passed_all += bool(trajectory.passed)
            for verdict in trajectory.verdicts:
                row.reached[verdict.gate] += 1
                row.passed[verdict.gate] += verdict.passed
    return dict(rows)
