"""The agreement gate: k independent samples of the assistant agree with the label.

LoopTool's consistency check: if a model, sampling with temperature > 0 from the same
context, rarely reproduces the labelled calls, the label (or the request) is likely off.
Each labelled turn is re-sampled ``k`` times from the messages before it; a sample agrees
when it passes the label check (BFCL semantics). The gate passes when every turn's
agreement rate reaches ``threshold``; its score is the lowest rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from tooldojo.llm.base import ChatModel, SamplingParams
from tooldojo.llm.codecs import DEFAULT_CODEC, ParseError
from tooldojo.model import Message, Trajectory, Verdict
from tooldojo.verify._match import ToolShape
from tooldojo.verify.label import shapes_of, turn_label_problem
from tooldojo.verify.turns import Turn, completion_turn


async def _agrees(
    model: ChatModel,
    turn: Turn,
    trajectory: Trajectory,
    shapes: dict[str, ToolShape],
    turns: Sequence[Turn],
    sampling: SamplingParams,
    codec: str,
) -> bool:
    context: list[Message] = trajectory.messages[: turn.message_index]
    completion = await model.complete(context, trajectory.tools, sampling=sampling)
    try:
        if completion.tool_calls:
            calls, text = list(completion.tool_calls), completion.text
        else:
            calls, text = completion_turn(completion.text, codec)
    except ParseError:
        return False
    sample = Turn(turn.index, turn.message_index, calls=calls, text=text, label=turn.label)
    if turn.label is not None and turn.label.kind == "call" and not calls:
        return False
    return turn_label_problem(sample, shapes, turns, trajectory.messages, trajectory.tools) is None


async def agreement_gate(
    turns: list[Turn],
    trajectory: Trajectory,
    model: ChatModel,
    *,
    k: int = 3,
    threshold: float = 2 / 3,
    temperature: float = 0.8,
    seed: int = 0,
    codec: str = DEFAULT_CODEC,
) -> Verdict:
    """Sample each labelled turn ``k`` times and require an agreement rate >= ``threshold``."""
    if k < 1 or temperature <= 0:
        raise ValueError("agreement needs k >= 1 samples at temperature > 0")
    shapes = shapes_of(trajectory.tools)
    labelled = [turn for turn in turns if turn.label is not None]
    rates: list[float] = []
    for turn in labelled:
        votes: list[bool] = [False] * k

        async def sample(i: int, turn: Turn = turn, votes: list[bool] = votes) -> None:
            sampling = SamplingParams(temperature=temperature, seed=seed + 1000 * turn.index + i)
            votes[i] = await _agrees(model, turn, trajectory, shapes, turns, sampling, codec)

        async with anyio.create_task_group() as group:
            for i in range(k):
                group.start_soon(sample, i)
        rates.append(sum(votes) / k)
    if not rates:
        return Verdict(gate="agreement", passed=True, score=1.0, reason="no labelled turn")
    low = min(rates)
    failing = [
        f"turn {t.index}: {r:.0%}" for t, r in zip(labelled, rates, strict=True) if r < threshold
    ]
    return Verdict(
        gate="agreement",
        passed=not failing,
        score=low,
        reason=(
            f"agreement below {threshold:.0%}: " + ", ".join(failing)
            if failing
            else f"all {len(rates)} turn(s) agree in >= {threshold:.0%} of {k} samples"
        ),
        details={"rates": rates, "k": k, "threshold": threshold, "model": model.name},
    )
