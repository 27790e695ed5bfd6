"""The user simulator's tries: decoded in parallel rounds, the first acceptable one taken in
attempt order, under a repetition penalty, with examples in the grammar's own form (scripted
model: orchestration only)."""

from __future__ import annotations

import json
import random
import re

import anyio
import pytest

from tooldojo.agents.user import (
    USER_FREQUENCY_PENALTY,
    UserSimulator,
    first_acceptable,
    values_constraint,
)
from tooldojo.llm.base import Completion, SamplingParams
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Scenario, ScenarioTurn

GOOD = "Could you look up the weather for Lisbon, please?"


def _scenario() -> Scenario:
    return Scenario(
        id="w1",
        category="single",
        tools=["get_weather"],
        turns=[ScenarioTurn(intent="get the weather")],
        style="polite",
        persona="a nurse",
        metadata={
            "asks": [
                [
                    {
                        "tool": "get_weather",
                        "description": "Get the current weather for a city.",
                        "values": {"city": "Lisbon"},
                    }
                ]
            ]
        },
    )


def _outcome(accepted: bool, delay: float, label: str):
    async def run():
        await anyio.sleep(delay)
        return (label if accepted else None), [f"{label} rejected"] if not accepted else []

    return run


@pytest.mark.anyio
async def test_first_acceptable_is_taken_in_attempt_order_not_finishing_order():
    # The second try finishes first and is acceptable, but the first is acceptable too.
    taken = await first_acceptable(
        [_outcome(True, 0.05, "one"), _outcome(True, 0.0, "two"), _outcome(False, 0.0, "three")]
    )
    assert [text for text, _ in taken] == ["one"]
    # A rejected first try: its problems come first, then the acceptable second one.
    taken = await first_acceptable([_outcome(False, 0.0, "one"), _outcome(True, 0.05, "two")])
    assert taken == [(None, ["one rejected"]), ("two", [])]
    # None acceptable: every outcome, in order.
    taken = await first_acceptable([_outcome(False, 0.02, "a"), _outcome(False, 0.0, "b")])
    assert [problems for _, problems in taken] == [["a rejected"], ["b rejected"]]


@pytest.mark.anyio
async def test_tries_after_the_accepted_one_are_cancelled_and_their_errors_ignored():
    finished: list[str] = []

    def slow(label: str):
        async def run():
            await anyio.sleep(5)
            finished.append(label)
            return None, []

        return run

    async def broken():
        raise RuntimeError("backend down")

    with anyio.fail_after(2):  # the slow try is cancelled, not awaited
        taken = await first_acceptable([_outcome(True, 0.0, "one"), slow("two"), broken])
    assert taken == [("one", [])] and finished == []
    with pytest.raises(RuntimeError, match="backend down"):  # reached in order: raised
        await first_acceptable([_outcome(False, 0.0, "one"), broken])


@pytest.mark.anyio
async def test_a_round_of_tries_is_decoded_at_once_and_the_earliest_good_one_wins():
    scripted = ScriptedChatModel(["It is raining.", json.dumps({"message": GOOD}), "x", "y"])
    user = UserSimulator(scripted, parallel=2, template_cap=0.0)
    text = await user.request(_scenario(), 0, random.Random(0))
    # Round one: the free try (no request) and the first grammar try; the second is taken.
    assert len(scripted.calls) == 2
    assert text.source == "model" and text.text == GOOD and text.attempts == 2
    assert text.constrained and text.problems  # the free try's problems are kept
    # Sequential tries (parallel=1) give the same message for the same seed.
    again = ScriptedChatModel(["It is raining.", json.dumps({"message": GOOD})])
    same = await UserSimulator(again, parallel=1).request(_scenario(), 0, random.Random(0))
    assert same.text == text.text and same.attempts == 2
    seeds = [sampling.seed for _, _, sampling in scripted.calls]
    assert seeds == [sampling.seed for _, _, sampling in again.calls]


@pytest.mark.anyio
async def test_user_sampling_gets_a_frequency_penalty_unless_it_sets_a_penalty():
    scripted = ScriptedChatModel([GOOD])
    await UserSimulator(scripted, parallel=1).request(_scenario(), 0, random.Random(0))
    assert scripted.calls[0][2].frequency_penalty == USER_FREQUENCY_PENALTY
    own = SamplingParams(temperature=0.7, max_tokens=100, repeat_penalty=1.2)
    scripted = ScriptedChatModel([GOOD])
    user = UserSimulator(scripted, sampling=own, parallel=1)
    await user.request(_scenario(), 0, random.Random(0))
    sent = scripted.calls[0][2]
    assert sent.repeat_penalty == 1.2 and sent.frequency_penalty == 0.0


@pytest.mark.anyio
async def test_examples_are_shown_as_json_only_to_tries_under_the_values_grammar():
    scripted = ScriptedChatModel(["It is raining.", json.dumps({"message": GOOD})])
    await UserSimulator(scripted, parallel=2).request(_scenario(), 0, random.Random(0))
    (free, _, _), (constrained, _, _) = scripted.calls
    free_answers = [m.content for m in free if m.role == "assistant"]
    json_answers = [m.content for m in constrained if m.role == "assistant"]
    assert free_answers and all(not a.startswith("{") for a in free_answers)
    assert [json.loads(a)["message"] for a in json_answers] == free_answers
    assert free[-1] == constrained[-1]  # the same goal


@pytest.mark.anyio
async def test_a_failed_completion_counts_as_a_failed_try():
    failing = ScriptedChatModel([Completion(error="down", finish_reason="error")] * 4)
    text = await UserSimulator(failing, template_cap=1.0).request(_scenario(), 0, random.Random(0))
    assert text.source == "template" and text.problems == ["down"] * 4


def test_free_words_of_the_values_grammar_refuse_chains_and_capitals():
    schema = values_constraint(["Lisbon"], question=True, topic="weath").json_schema
    pattern = schema["properties"]["message"]["pattern"]
    assert re.fullmatch(pattern, "Could you check the weather in Lisbon for me?")
    assert re.fullmatch(pattern, "What's the weather like in Lisbon today, my dear?")
    assert not re.fullmatch(pattern, "Weather vu-vu-vu-vu in Lisbon?")  # a hyphen chain
    assert not re.fullmatch(pattern, "Weather ZA-Z in Lisbon?")  # capitals inside a word
    assert not re.fullmatch(pattern, "Weather ia ia ia ia ia ia ia ia ia ia in Lisbon?")  # long


def test_a_plan_no_message_can_satisfy_is_reported_without_tries():
    from tooldojo.agents.user import RequestCheck, TemplateCapReached

    assert RequestCheck(["Lisbon", 3], [], ["get_weather"]).unwritable() == []
    named = RequestCheck(["see get_weather docs"], [], ["get_weather"])
    assert named.unwritable() == ["a planned value names the tool get_weather"]
    holds = RequestCheck(["org 1234-5678"], ["1234-5678"], [])
    assert holds.unwritable() == ["a planned value holds withheld 1234-5678"]
    looping = RequestCheck(["a note a note a note a note a note"], [], [])
    assert looping.unwritable()[0].startswith("a planned value loops")

    scenario = _scenario()
    scenario.metadata["asks"][0][0]["values"] = {"city": "get_weather city"}
    scripted = ScriptedChatModel([])  # any call would exhaust the script
    with pytest.raises(TemplateCapReached) as caught:
        await_request = UserSimulator(scripted, template_cap=0.0).request
        anyio.run(await_request, scenario, 0, random.Random(0))
    assert caught.value.problems == ["a planned value names the tool get_weather"]
    assert scripted.calls == []
    templated = anyio.run(
        UserSimulator(scripted, template_cap=1.0).request, scenario, 0, random.Random(0)
    )
    assert templated.source == "template" and templated.attempts == 0


@pytest.mark.anyio
async def test_a_free_try_is_shorter_than_a_try_under_the_values_grammar():
    scripted = ScriptedChatModel(["It is raining.", json.dumps({"message": GOOD})])
    await UserSimulator(scripted).request(_scenario(), 0, random.Random(0))
    (_, _, free), (_, _, constrained) = scripted.calls
    assert free.max_tokens == 64 + len("Lisbon") < 160  # the role's limit, cut
    assert constrained.max_tokens >= 160


@pytest.mark.anyio
async def test_a_message_cut_off_at_the_token_limit_is_not_taken():
    cut = Completion(
        text="Could you look up the weather for Lisbon, and then", finish_reason="length"
    )
    scripted = ScriptedChatModel([cut, json.dumps({"message": GOOD})])
    text = await UserSimulator(scripted).request(_scenario(), 0, random.Random(0))
    assert text.attempts == 2 and text.problems == ["cut off at the token limit"]
