"""The judge gate: one or several LLM judges decide whether request, labels and results fit.

Each judge reads the tools, the conversation and the labels and answers a JSON verdict
(constrained decoding where the backend supports it). Decision: majority of the judges, and
the winning side must hold at least ``consensus`` of all judges (unparseable answers count as
abstentions, so they make consensus harder, never easier). A judge that fails the trajectory
may propose corrected labels; the most common valid proposal is recorded in
``Verdict.corrected_labels`` and never applied here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
from pydantic import TypeAdapter, ValidationError

from tooldojo.llm.base import ChatModel, Constraint, SamplingParams
from tooldojo.model import Label, Message, Trajectory, Verdict

JUDGE_SYSTEM = (
    "You review one synthetic conversation in which an assistant calls tools. Decide whether "
    "the user's requests are sensible, whether the labelled calls (the ground truth for each "
    'assistant turn, each argument a list of acceptable values, "" meaning it may be '
    "omitted) are what a careful assistant should do with these tools, and whether the tool "
    "results make sense for the calls. Answer only with JSON: "
    '{"verdict": "pass" or "fail", "reason": "...", "corrected_labels": null or a list with '
    "one label per assistant turn, when you fail it because a label is wrong}."
)

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "reason": {"type": "string"},
        "corrected_labels": {
            "anyOf": [
                {"type": "null"},
                {"type": "array", "items": Label.model_json_schema()},
            ]
        },
    },
    "required": ["verdict", "reason"],
}

_LABELS = TypeAdapter(list[Label])


def judge_prompt(trajectory: Trajectory) -> list[Message]:
    """The messages a judge sees: instructions, then the case as compact JSON."""
    case = {
        "tools": [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in trajectory.tools
        ],
        "conversation": trajectory.openai_messages(),
        "labels": [label.model_dump(mode="json", exclude_none=True) for label in trajectory.labels],
    }
    return [
        Message(role="system", content=JUDGE_SYSTEM),
        Message(role="user", content=json.dumps(case, ensure_ascii=False)),
    ]


def parse_judgement(text: str) -> tuple[str | None, str, list[Label] | None]:
    """``(verdict, reason, corrected labels)`` of a judge answer; verdict ``None`` if invalid."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None, "judge answered no JSON", None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None, "judge answered invalid JSON", None
    verdict = data.get("verdict") if isinstance(data, dict) else None
    if verdict not in ("pass", "fail"):
        return None, "judge answered no pass/fail verdict", None
    corrected = None
    if verdict == "fail" and data.get("corrected_labels"):
        try:
            corrected = _LABELS.validate_python(data["corrected_labels"])
        except ValidationError:
            corrected = None
    return verdict, str(data.get("reason", "")), corrected


async def judge_gate(
    trajectory: Trajectory,
    judges: Sequence[ChatModel],
    *,
    consensus: float = 0.5,
    temperature: float = 0.0,
) -> Verdict:
    """Majority vote of ``judges``; the winning side needs ``consensus`` of all judges."""
    if not judges:
        raise ValueError("the judge gate needs at least one judge model")
    prompt = judge_prompt(trajectory)
    answers: list[tuple[str | None, str, list[Label] | None]] = [(None, "", None)] * len(judges)

    async def ask(index: int, judge: ChatModel) -> None:
        completion = await judge.complete(
            prompt,
            None,
            sampling=SamplingParams(temperature=temperature, max_tokens=1024),
            constraint=Constraint(kind="json_schema", schema=JUDGE_SCHEMA),
        )
        answers[index] = parse_judgement(completion.text)

    async with anyio.create_task_group() as group:
        for index, judge in enumerate(judges):
            group.start_soon(ask, index, judge)

    votes = Counter(verdict for verdict, _, _ in answers if verdict is not None)
    passes, fails = votes["pass"], votes["fail"]
    passed = passes > fails and passes / len(judges) >= consensus
    consensus_failed = max(passes, fails) / len(judges) < consensus
    proposals = Counter(
        json.dumps([label.model_dump(mode="json") for label in corrected], sort_keys=True)
        for verdict, _, corrected in answers
        if verdict == "fail" and corrected
    )
    corrected_labels = None
    if proposals and not passed:
        best, _ = proposals.most_common(1)[0]
        corrected_labels = _LABELS.validate_python(json.loads(best))
    reasons = [
        f"{judge.name}: {verdict or 'abstain'} ({reason})"
        for judge, (verdict, reason, _) in zip(judges, answers, strict=True)
    ]
    summary = f"{passes} pass / {fails} fail / {len(judges) - passes - fails} abstain"
    if consensus_failed and not passed:
        summary += f"; no {consensus:.0%} consensus"
    return Verdict(
        gate="judge",
        passed=passed,
        score=passes / len(judges),
        reason=summary,
        details={"votes": reasons, "consensus": consensus},
        corrected_labels=corrected_labels,
    )
