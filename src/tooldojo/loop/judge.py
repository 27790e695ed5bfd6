"""Judgement-guided label verification (LoopTool's JGLV): who erred, the label or the model?

For each training-pool turn the probed model got "wrong", one or several judge models
read the tools, the conversation, the label and the model's answer and decide:

- ``label_wrong``: the model's answer is the right one. If it is schema-valid it becomes
  the new label (recorded with ``corrected_from``) on a copy of the trajectory cut after
  that turn — later turns were built on the old calls' results; otherwise it is dropped.
- ``model_wrong``: the label stands; the sample is kept as a hard sample and expanded.
- ``both_wrong``: dropped.

Several judges vote; a strict majority decides and a tie drops the sample (a wrong label
trained on is worse than a lost one). One judge decides on its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.llm.base import ChatModel, Constraint, SamplingParams
from tooldojo.loop.probe import ProbeRecord
from tooldojo.model import Label, LabelCall, Message, Trajectory
from tooldojo.verify.schema import argument_errors

Decision = Literal["label_wrong", "model_wrong", "both_wrong"]
DECISIONS: tuple[str, ...] = Decision.__args__  # type: ignore[attr-defined]

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": list(DECISIONS)},
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
    """The decision on one disagreement, with each judge's vote."""

    id: str
    trajectory_id: str
    turn: int
    category: str
    decision: Decision
    votes: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    corrected: Trajectory | None = None
    """For ``label_wrong`` with a schema-valid model answer: the corrected, truncated sample."""


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


def parse_verdict(text: str) -> tuple[Decision | None, str]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None, f"unreadable verdict {text[:80]!r}"
    verdict = value.get("verdict") if isinstance(value, dict) else None
    if verdict not in DECISIONS:
        return None, f"unknown verdict {verdict!r}"
    return verdict, str(value.get("reason", ""))


def decide(votes: list[Decision | None]) -> Decision:
    """Strict majority of valid votes; a tie or no valid vote drops the sample."""
    valid = [v for v in votes if v is not None]
    if not valid:
        return "both_wrong"
    (top, count), *rest = Counter(valid).most_common()
    if rest and rest[0][1] == count:
        return "both_wrong"
    return top


def corrected_sample(record: ProbeRecord, trajectory: Trajectory) -> Trajectory | None:
    """The model's schema-valid answer as the new label, on the trajectory cut after that turn."""
    if not record.calls and record.label.kind == "call":
        return None
    tools = {t.name: t for t in trajectory.tools}
    for call in record.calls:
        if call.name not in tools or argument_errors(tools[call.name], call.arguments):
            return None
    new_label = Label(
        kind="call" if record.calls else record.label.kind,
        calls=[
            LabelCall(name=c.name, arguments={k: [v] for k, v in c.arguments.items()})
            for c in record.calls
        ],
        corrected_from=record.label,
    )
    answer = Message(
        role="assistant", content=record.text or None, tool_calls=list(record.calls) or None
    )
    return trajectory.model_copy(
        update={
            "id": f"{trajectory.id}~c{record.turn}",
            "messages": [*_history(trajectory, record.turn), answer],
            "labels": [*trajectory.labels[: record.turn], new_label],
            "metadata": {**trajectory.metadata, "corrected_from": trajectory.id},
        }
    )


async def judge_case(
    judges: list[ChatModel], record: ProbeRecord, trajectory: Trajectory
) -> JudgedRecord:
    case = _render_case(record, trajectory)
    messages = [Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=case)]
    votes: list[Decision | None] = []
    reasons: list[str] = []
    for judge in judges:
        completion = await judge.complete(
            messages,
            sampling=SamplingParams(temperature=0.0, max_tokens=160),
            constraint=Constraint(kind="json_schema", schema=VERDICT_SCHEMA),
        )
        verdict, reason = (
            parse_verdict(completion.text)
            if completion.ok
            else (None, completion.error or "judge failed")
        )
        votes.append(verdict)
        reasons.append(reason)
    decision = decide(votes)
    corrected = corrected_sample(record, trajectory) if decision == "label_wrong" else None
    if decision == "label_wrong" and corrected is None:
        reasons.append("model answer not schema-valid: sample dropped")
    return JudgedRecord(
        id=record.id,
        trajectory_id=record.trajectory_id,
        turn=record.turn,
        category=record.category,
        decision=decision,
        votes=[v or "invalid" for v in votes],
        reasons=reasons,
        corrected=corrected,
    )


async def run_judge(
    judges: list[ChatModel],
    probe_file: Path,
    pool: Iterable[Trajectory],
    out: Path,
    *,
    max_cases: int,
    progress: Any = None,
) -> dict[str, int]:
    """Judge the training-pool disagreements of ``probe_file`` into ``out`` (resumes by id)."""
    by_id = {t.id: t for t in pool}
    done = existing_ids(out)
    cases = [
        r
        for r in read_jsonl(probe_file, ProbeRecord)
        if r.split == "train" and not r.correct and r.trajectory_id in by_id
    ][:max_cases]
    for record in cases:
        if record.id in done:
            continue
        append_jsonl(out, [await judge_case(judges, record, by_id[record.trajectory_id])])
        if progress is not None:
            progress()
    decisions = Counter(r.decision for r in read_jsonl(out, JudgedRecord))
    return {name: decisions.get(name, 0) for name in DECISIONS}
