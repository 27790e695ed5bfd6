"""Agreement and judge gates: orchestration logic, driven by ScriptedChatModel."""

from __future__ import annotations

import json

import pytest

from tooldojo.llm.base import Completion
from tooldojo.llm.codecs import get_codec
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify import VerifyOptions, verify_trajectory
from tooldojo.verify.agreement import agreement_gate
from tooldojo.verify.judge import judge_gate, parse_judgement
from tooldojo.verify.turns import assistant_turns

TOOL = Tool(
    name="convert",
    parameters={
        "type": "object",
        "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        "required": ["amount", "to"],
    },
)
LABEL = Label(
    kind="call",
    calls=[LabelCall(name="convert", arguments={"amount": [10.0], "to": ["EUR"]})],
)
GOOD = ToolCall(name="convert", arguments={"amount": 10, "to": "eur"})
BAD = ToolCall(name="convert", arguments={"amount": 12, "to": "EUR"})
HERMES = get_codec("hermes")


def trajectory() -> Trajectory:
    return Trajectory(
        id="fx",
        category="single",
        tools=[TOOL],
        messages=[
            Message(role="user", content="Convert 10 dollars to euros."),
            Message(
                role="assistant",
                tool_calls=[
                    ToolCall(id="c", name="convert", arguments={"amount": 10, "to": "EUR"})
                ],
            ),
        ],
        labels=[LABEL],
    )


@pytest.mark.anyio
async def test_agreement_counts_matching_samples_per_turn() -> None:
    # Native tool calls, codec text, and a malformed sample: 2 of 3 agree.
    model = ScriptedChatModel(
        [
            Completion(tool_calls=[GOOD]),
            HERMES.format_calls([GOOD]),
            '<tool_call>{"name": "convert", </tool_call>',
        ]
    )
    traj = trajectory()
    verdict = await agreement_gate(assistant_turns(traj), traj, model, k=3, threshold=0.6)
    assert verdict.passed and verdict.score == pytest.approx(2 / 3)
    # Samples see only the context before the turn, at temperature > 0 with distinct seeds.
    contexts = [[m.role for m in messages] for messages, _, _ in model.calls]
    assert contexts == [["user"]] * 3
    samplings = [sampling for _, _, sampling in model.calls]
    assert all(s.temperature == 0.8 for s in samplings)
    assert len({s.seed for s in samplings}) == 3


@pytest.mark.anyio
async def test_agreement_fails_below_threshold_and_rejects_greedy_sampling() -> None:
    model = ScriptedChatModel(
        [Completion(tool_calls=[BAD]), "prose", Completion(tool_calls=[GOOD])]
    )
    traj = trajectory()
    result = await verify_trajectory(
        traj,
        VerifyOptions(
            gates=["format", "schema", "label", "agreement"],
            agreement_model=model,
            agreement_k=3,
            agreement_threshold=0.5,
        ),
    )
    assert result.passed is False
    assert result.verdicts[-1].gate == "agreement"
    assert "turn 0: 33%" in result.verdicts[-1].reason
    with pytest.raises(ValueError):
        await agreement_gate(assistant_turns(traj), traj, model, temperature=0.0)


def judge(verdict: str, reason: str = "ok", corrected=None, name: str = "j") -> ScriptedChatModel:
    payload = {"verdict": verdict, "reason": reason, "corrected_labels": corrected}
    return ScriptedChatModel([json.dumps(payload)], name=name)


@pytest.mark.anyio
async def test_judges_vote_by_majority_with_consensus_threshold() -> None:
    traj = trajectory()
    two_of_three = [judge("pass", name="a"), judge("pass", name="b"), judge("fail", name="c")]
    verdict = await judge_gate(traj, two_of_three)
    assert verdict.passed and verdict.score == pytest.approx(2 / 3)
    assert "2 pass / 1 fail / 0 abstain" in verdict.reason
    # The judge sees tools, conversation and labels, with a JSON-schema constraint.
    prompt = two_of_three[0].calls[0][0]
    assert "convert" in prompt[1].content and "EUR" in prompt[1].content

    strict = [judge("pass"), judge("pass"), judge("fail")]
    assert not (await judge_gate(traj, strict, consensus=0.8)).passed
    tie = [judge("pass"), judge("fail")]
    assert not (await judge_gate(traj, tie)).passed
    abstaining = [judge("pass"), ScriptedChatModel(["no json here"]), ScriptedChatModel(["{bad"])]
    verdict = await judge_gate(traj, abstaining, consensus=0.5)
    assert not verdict.passed and "1 pass / 0 fail / 2 abstain" in verdict.reason


@pytest.mark.anyio
async def test_judge_corrections_are_recorded_never_applied() -> None:
    traj = trajectory()
    fix = [
        Label(
            kind="call",
            calls=[LabelCall(name="convert", arguments={"amount": [10.0], "to": ["EUR", "€"]})],
        )
    ]
    fix_json = [label.model_dump(mode="json") for label in fix]
    judges = [
        judge("fail", "currency", fix_json),
        judge("fail", "currency", fix_json),
        judge("pass"),
    ]
    result = await verify_trajectory(traj, VerifyOptions(gates=["label", "judge"], judges=judges))
    verdict = result.verdicts[-1]
    assert verdict.gate == "judge" and not verdict.passed
    assert verdict.corrected_labels == fix
    assert result.labels == [LABEL]  # untouched


def test_parse_judgement_tolerates_prose_around_json_and_drops_invalid_corrections() -> None:
    verdict, reason, corrected = parse_judgement(
        'Sure: {"verdict": "fail", "reason": "x", "corrected_labels": [{"kind": "nonsense"}]}'
    )
    assert (verdict, reason, corrected) == ("fail", "x", None)
    assert parse_judgement('{"verdict": "maybe"}')[0] is None
