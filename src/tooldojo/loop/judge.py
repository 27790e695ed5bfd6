"""Judgement-guided label verification (LoopTool's JGLV): who erred, the label or the model?

For each training-pool turn the probed model got wrong, judge models read the tools, the
conversation, the label and the model's answer and decide:

- ``label_wrong``: the model's answer is the right one. If it is schema-valid it becomes
  the new label (recorded with ``corrected_from``) on a copy of the trajectory cut after
  that turn — later turns were built on the old calls' results. The copy then runs every
  gate of verification again (:func:`tooldojo.verify.pipeline.verify_trajectory`); only a
  copy that passes enters the pool.
- ``model_wrong``: the label stands; the sample is kept as a hard sample and expanded.
- ``both_wrong``: dropped.

Every case gets at least two votes (several judges, several samples each, or both). A
decision needs a strict majority of *all* votes cast, so a failed judgement (an error, an
unreadable or unknown verdict) counts against every side and is never guessed into one:
with no such majority the case is ``undecided`` and nothing changes. Cases whose valid votes
differ are flagged (``unanimous``) and counted, so disagreement between judges is on record.

One kind of case the gates decide, not the votes: an answer whose call names a tool not
offered or breaks its tool's schema cannot be right, whatever the label, and the label passed
every gate (it is in the training pool). Such a case is ``model_wrong`` (``decided_by``
``gates``); the judges still vote, and how often their majority agreed is counted, a
measure of the judges on cases whose answer is known. Why: the 135M judge of the scale loop
voted ``both_wrong`` on 9 of its first 12 cases and ``model_wrong`` on none, so error-driven
expansion had nothing to grow from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.llm.base import ChatModel, Constraint, SamplingParams
from tooldojo.loop.classify import ErrorClass, TurnKind
from tooldojo.loop.probe import ProbeRecord, breaks_schema
from tooldojo.model import Label, LabelCall, Message, ToolCall, Trajectory
from tooldojo.verify.pipeline import VerifyOptions, verify_trajectory

Verdict = Literal["label_wrong", "model_wrong", "both_wrong"]
VERDICTS: tuple[str, ...] = Verdict.__args__  # type: ignore[attr-defined]
Decision = Literal["label_wrong", "model_wrong", "both_wrong", "undecided"]
DECISIONS: tuple[str, ...] = Decision.__args__  # type: ignore[attr-defined]

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["verdict", "reason"],
    "additionalProperties": False,
}

JUDGE_SYSTEM = (
    "You review training data for an AI assistant that calls tools. You see the tools, the "
    "conversation, the EXPECTED answer (the label) and the MODEL's answer, which differ. "
    "Decide which one correctly fulfils the user's last request with the tools given:\n"
    '- "label_wrong": the model\'s answer is correct and the expected answer is not;\n'
    '- "model_wrong": the expected answer is correct and the model\'s answer is not;\n'
    '- "both_wrong": neither is correct.\n'
    'Reply with JSON: {"verdict": ..., "reason": "<one sentence>"}.'
)


class JudgedRecord(BaseModel):
    """The decision on one disagreement, with each vote."""

    id: str
    trajectory_id: str
    turn: int
    category: str
    decision: Decision
    kind: TurnKind = "call"
    error_class: ErrorClass | None = None
    """The probe's class of the model's mistake (what expansion conditions on)."""
    calls: list[ToolCall] = Field(default_factory=list)
    """The model's answer: its calls..."""
    text: str = ""
    """... and its text."""
    label: Label | None = None
    votes: list[str] = Field(default_factory=list)
    """One per judge sample: a verdict, or ``failed``."""
    reasons: list[str] = Field(default_factory=list)
    unanimous: bool = True
    """Every valid vote agreed (and there was at least one)."""
    corrected: Trajectory | None = None
    """For ``label_wrong``: the corrected, truncated sample, only when it passed every gate."""
    correction_rejected: str | None = None
    """For ``label_wrong`` without ``corrected``: why the correction was not taken."""
    decided_by: Literal["judges", "gates"] = "judges"
    """``gates``: the answer broke the schema gate that the label passed (see the module)."""
    judges_said: Decision | None = None
    """For a case the gates decided: what the judges' majority alone would have decided."""


def _render_case(record: ProbeRecord, trajectory: Trajectory) -> str:
    history = _history(trajectory, record.turn)
    tools = "\n".join(
        json.dumps(
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters.get("properties", {}),
            },
            separators=(",", ":"),
        )
        for t in trajectory.tools
    )
    lines = [
        f"{m.role}: {m.content or ''}"
        + (
            " " + json.dumps([{"name": c.name, "arguments": c.arguments} for c in m.tool_calls])
            if m.tool_calls
            else ""
        )
        for m in history
    ]
    expected = _answer_text(
        [
            {
                "name": c.name,
                "arguments": {
                    k: v[0] if v else None for k, v in c.arguments.items() if v and v[0] != ""
                },
            }
            for c in record.label.calls
        ],
        record.label.kind,
    )
    model = _answer_text(
        [{"name": c.name, "arguments": c.arguments} for c in record.calls],
        "call" if record.calls else "text",
        record.text,
    )
    return (
        f"TOOLS:\n{tools}\n\nCONVERSATION:\n"
        + "\n".join(lines)
        + f"\n\nEXPECTED answer: {expected}\nMODEL answer: {model}\n"
        + f"Automatic check: {record.reason}"
    )


def _answer_text(calls: list[dict[str, Any]], kind: str, text: str = "") -> str:
    if calls:
        return "calls " + json.dumps(calls, ensure_ascii=False)
    if kind == "refuse":
        return "no tool call (no tool fits the request)"
    if kind == "clarify":
        return "a question asking the user for missing details"
    return f"a text reply: {text[:300]!r}" if text else "a text reply"


def _history(trajectory: Trajectory, turn: int) -> list[Message]:
    seen = -1
    for index, message in enumerate(trajectory.messages):
        if message.role == "assistant":
            seen += 1
            if seen == turn:
                return trajectory.messages[:index]
    return list(trajectory.messages)


def parse_verdict(text: str) -> tuple[Verdict | None, str]:
    """A judge's verdict, or ``None`` with why it could not be read (never a guess)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None, f"unreadable verdict {text[:80]!r}"
    verdict = value.get("verdict") if isinstance(value, dict) else None
    if verdict not in VERDICTS:
        return None, f"unknown verdict {verdict!r}"
    return verdict, str(value.get("reason", ""))


def decide(votes: Sequence[Verdict | None]) -> Decision:
    """The verdict of a strict majority of all votes cast (failed ones included), else
    ``undecided``: two failed judgements and one vote decide nothing."""
    valid = [v for v in votes if v is not None]
    if not valid:
        return "undecided"
    top, count = Counter(valid).most_common(1)[0]
    return top if count * 2 > len(votes) else "undecided"


def corrected_sample(record: ProbeRecord, trajectory: Trajectory) -> Trajectory | None:
    """The model's schema-valid answer as the new label, on the trajectory cut after that turn."""
    if not record.calls and record.label.kind == "call":
        return None
    if breaks_schema(record.calls, trajectory.tools):
        return None
    new_label = Label(
        kind="call" if record.calls else record.label.kind,
        calls=[
            LabelCall(name=c.name, arguments={k: [v] for k, v in c.arguments.items()})
            for c in record.calls
        ],
        missing=[] if record.calls else list(record.label.missing),
        corrected_from=record.label,
    )
    answer = Message(
        role="assistant", content=record.text or None, tool_calls=list(record.calls) or None
    )
    answer.origin = "model"  # the probed model wrote it; the judge only chose it
    return trajectory.model_copy(
        update={
            "id": f"{trajectory.id}~c{record.turn}",
            "messages": [*_history(trajectory, record.turn), answer],
            "labels": [*trajectory.labels[: record.turn], new_label],
            "verdicts": [],
            "passed": None,
            "metadata": {**trajectory.metadata, "corrected_from": trajectory.id},
        }
    )


async def regate(candidate: Trajectory, options: VerifyOptions) -> tuple[Trajectory | None, str]:
    """``candidate`` re-verified by every configured gate: (the passed copy, "") or
    (None, the first failing gate's reason)."""
    verified = await verify_trajectory(candidate, options)
    if verified.passed:
        return verified, ""
    failing = next((v for v in verified.verdicts if not v.passed), None)
    return None, f"{failing.gate}: {failing.reason}" if failing else "no gate ran"


async def _vote(
    judge: ChatModel, messages: list[Message], sampling: SamplingParams
) -> tuple[Verdict | None, str]:
    try:
        completion = await judge.complete(
            messages,
            sampling=sampling,
            constraint=Constraint(kind="json_schema", schema=VERDICT_SCHEMA),
        )
    except Exception as error:  # a judge that crashes is a failed vote, not a guess
        return None, f"judge failed: {type(error).__name__}: {error}"
    if not completion.ok:
        return None, completion.error or "judge failed"
    return parse_verdict(completion.text)


async def judge_case(
    judges: Sequence[ChatModel],
    record: ProbeRecord,
    trajectory: Trajectory,
    *,
    samples: int = 1,
    temperature: float = 0.7,
    gates: VerifyOptions | None = None,
) -> JudgedRecord:
    """Votes of every judge (``samples`` each: the first greedy, the rest sampled at
    ``temperature``), the majority decision and, for ``label_wrong``, the re-gated correction."""
    case = _render_case(record, trajectory)
    messages = [Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=case)]
    votes: list[Verdict | None] = []
    reasons: list[str] = []
    for judge in judges:
        for sample in range(samples):
            sampling = SamplingParams(
                temperature=0.0 if sample == 0 else temperature, max_tokens=160, seed=sample
            )
            verdict, reason = await _vote(judge, messages, sampling)
            votes.append(verdict)
            reasons.append(reason)
    decision = decide(votes)
    judges_said: Decision | None = None
    if breaks_schema(record.calls, trajectory.tools):
        judges_said, decision = decision, "model_wrong"
    corrected: Trajectory | None = None
    rejected: str | None = None
    if decision == "label_wrong":
        candidate = corrected_sample(record, trajectory)
        if candidate is None:
            rejected = "model answer not schema-valid"
        else:
            corrected, why = await regate(candidate, gates or VerifyOptions())
            rejected = why or None
    valid = {v for v in votes if v is not None}
    return JudgedRecord(
        id=record.id,
        trajectory_id=record.trajectory_id,
        turn=record.turn,
        category=record.category,
        decision=decision,
        kind=record.kind,
        error_class=record.error_class,
        calls=record.calls,
        text=record.text,
        label=record.label,
        votes=[v or "failed" for v in votes],
        reasons=reasons,
        unanimous=len(valid) == 1,
        corrected=corrected,
        correction_rejected=rejected,
        decided_by="judges" if judges_said is None else "gates",
        judges_said=judges_said,
    )


def pick_cases(records: Iterable[ProbeRecord], max_cases: int | None) -> list[ProbeRecord]:
    """Every failure, or at most ``max_cases`` taken in turn from each error class (so a cap
    never leaves a kind of mistake unjudged)."""
    failures = list(records)
    if max_cases is None or len(failures) <= max_cases:
        return failures
    by_class: dict[str, list[ProbeRecord]] = {}
    for record in failures:
        by_class.setdefault(record.error_class or "", []).append(record)
    queues = [by_class[key] for key in sorted(by_class)]
    picked: list[ProbeRecord] = []
    while len(picked) < max_cases:
        for queue in queues:
            if queue and len(picked) < max_cases:
                picked.append(queue.pop(0))
    return picked


def judge_counts(records: Iterable[JudgedRecord]) -> dict[str, int]:
    """Decisions, failed votes, split votes and corrections: what the report shows."""
    records = list(records)
    decisions = Counter(r.decision for r in records)
    out = {name: decisions.get(name, 0) for name in DECISIONS}
    out["cases"] = len(records)
    out["votes"] = sum(len(r.votes) for r in records)
    out["failed_votes"] = sum(v == "failed" for r in records for v in r.votes)
    out["disagreements"] = sum(
        not r.unanimous for r in records if any(v != "failed" for v in r.votes)
    )
    out["corrections_passed"] = sum(r.corrected is not None for r in records)
    out["corrections_rejected"] = sum(r.correction_rejected is not None for r in records)
    by_gates = [r for r in records if r.decided_by == "gates"]
    out["decided_by_gates"] = len(by_gates)
    out["judges_agreed_with_gates"] = sum(r.judges_said == "model_wrong" for r in by_gates)
    return out


async def run_judge(
    judges: Sequence[ChatModel],
    probe_file: Path,
    pool: Iterable[Trajectory],
    out: Path,
    *,
    max_cases: int | None = None,
    samples: int = 1,
    temperature: float = 0.7,
    gates: VerifyOptions | None = None,
    progress: Any = None,
) -> dict[str, int]:
    """Judge the training-pool disagreements of ``probe_file`` into ``out`` (resumes by id)."""
    if len(judges) * samples < 2:
        raise ValueError("the judge needs at least two votes per case (judges x samples)")
    by_id = {t.id: t for t in pool}
    done = existing_ids(out)
    cases = pick_cases(
        (
            r
            for r in read_jsonl(probe_file, ProbeRecord)
            if r.split == "train" and not r.correct and r.trajectory_id in by_id
        ),
        max_cases,
    )
    if progress is not None:  # once with the cases left, then once per case
        progress(total=sum(1 for record in cases if record.id not in done))
    for record in cases:
        if record.id in done:
            continue
        judged = await judge_case(
            judges,
            record,
            by_id[record.trajectory_id],
            samples=samples,
            temperature=temperature,
            gates=gates,
        )
        append_jsonl(out, [judged])
        if progress is not None:
            progress()
    return judge_counts(read_jsonl(out, JudgedRecord))
