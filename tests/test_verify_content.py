"""The gates with teeth: each has a trajectory built to fail it, and a sound one that passes."""

from __future__ import annotations

import json

import pytest

from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify import VerifyOptions, verify_trajectory
from tooldojo.verify.accounting import accounting, gate_failures
from tooldojo.verify.grounding import value_in

WEATHER = Tool(
    name="get_forecast",
    description="Weather forecast for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Name of the city"},
            "days": {"type": "integer", "description": "How many days ahead to forecast"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
    },
)
LABEL = Label(
    kind="call",
    calls=[
        LabelCall(
            name="get_forecast", arguments={"city": ["Lisbon"], "days": [3], "unit": ["celsius"]}
        )
    ],
)
CALL = ToolCall(
    id="c1", name="get_forecast", arguments={"city": "Lisbon", "days": 3, "unit": "celsius"}
)
RESULT = {"city": "Lisbon", "days": 3, "forecast": [{"day": "Monday", "high": 21}]}
REQUEST = "What will the weather be like in Lisbon over the next three days? In °C please."
ANSWER = "Lisbon looks mild: Monday reaches a high of 21 degrees, the rest of the forecast is dry."


def episode(
    request: str = REQUEST,
    answer: str = ANSWER,
    result: object = RESULT,
    *,
    is_error: bool | None = None,
    injected: bool = False,
    labels: list[Label] | None = None,
    messages: list[Message] | None = None,
) -> Trajectory:
    tool = Message(
        role="tool",
        tool_call_id="c1",
        name="get_forecast",
        content=result if isinstance(result, str) else json.dumps(result),
        is_error=is_error,
        origin="executed",
    )
    if injected:
        tool.injected = True
    return Trajectory(
        id="t",
        category="single",
        tools=[WEATHER],
        messages=messages
        or [
            Message(role="system", content="You can call tools."),
            Message(role="user", content=request, origin="model"),
            Message(role="assistant", tool_calls=[CALL], origin="forced"),
            tool,
            Message(role="assistant", content=answer, origin="model"),
        ],
        labels=labels or [LABEL, Label(kind="text")],
    )


async def stopped_by(trajectory: Trajectory) -> tuple[str | None, list[str]]:
    verified = await verify_trajectory(trajectory, VerifyOptions())
    if verified.passed:
        return None, []
    last = verified.verdicts[-1]
    return last.gate, list(last.details.get("reasons", []))


@pytest.mark.anyio
async def test_an_answer_that_repeats_an_earlier_answer_fails_and_a_new_one_passes() -> None:
    """Seen in the scale run's passed data: a second request answered with the first answer."""
    second = "And what about Porto for 3 days in celsius?"

    def two_turns(last: str) -> Trajectory:
        base = episode()
        call = Message(role="assistant", tool_calls=[CALL.model_copy(update={"id": "c2"})])
        result = base.messages[3].model_copy(update={"tool_call_id": "c2"})
        messages = [
            *base.messages,
            Message(role="user", content=second, origin="model"),
            call,
            result,
            Message(role="assistant", content=last, origin="model"),
        ]
        labels = [LABEL, Label(kind="text"), LABEL, Label(kind="text")]
        return base.model_copy(update={"messages": messages, "labels": labels})

    gate, reasons = await stopped_by(two_turns(ANSWER))
    assert gate == "turns" and "repeated_answer" in reasons
    fresh = "Porto too: Monday reaches a high of 21 degrees there, and it stays dry all week."
    assert await stopped_by(two_turns(fresh)) == (None, [])


@pytest.mark.anyio
async def test_a_sound_episode_passes_every_default_gate() -> None:
    assert await stopped_by(episode()) == (None, [])


@pytest.mark.anyio
async def test_a_denial_the_result_supports_passes() -> None:
    """A ``false`` flag, or the phrase in the result's own text, may be answered with "not"."""
    flagged = {**RESULT, "outdoor_dining_possible": False}
    answer = "Monday in Lisbon reaches 21, but outdoor dining is not possible this week."
    assert await stopped_by(episode(answer=answer, result=flagged)) == (None, [])
    quoted = {**RESULT, "note": "Marine data no longer available for Lisbon"}
    answer = "Monday in Lisbon reaches 21; marine data is no longer available there."
    assert await stopped_by(episode(answer=answer, result=quoted)) == (None, [])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("changes", "gate", "reason"),
    [
        ({"answer": "Done. Here is what I found: " + json.dumps(RESULT)}, "turns", "filler"),
        (
            {"answer": "Sure! ```get_forecast(city='Lisbon')``` gives 21 in Lisbon"},
            "turns",
            "prose_code",
        ),
        ({"answer": 'In Lisbon: {"name": "get_forecast"} high 21'}, "turns", "prose_code"),
        ({"answer": "Lisbon, high 21:\nconst high = forecast[0].high;"}, "turns", "prose_code"),
        (
            {"answer": "It will be lovely weather for a picnic, enjoy the sunshine!"},
            "turns",
            "ungrounded_answer",
        ),
        ({"answer": "Sorry, the tool failed: rate limited."}, "turns", "ungrounded_answer"),
        ({"answer": "2023-04-19T12:21:10.39-10-17.25.23 Monday 21"}, "turns", "degenerate"),
        ({"answer": "Monday: 21."}, "turns", "degenerate"),
        (
            {
                "answer": "Monday 21. Order cancelled, order cancelled, order cancelled, "
                "order cancelled."
            },
            "turns",
            "degenerate",
        ),
        # only echoes what the user said (Lisbon, 3 days): nothing the result added
        (
            {"answer": "Your forecast for Lisbon over 3 days is ready."},
            "turns",
            "ungrounded_answer",
        ),
        (
            {"result": "'get_forecast' timed out after 60 s", "is_error": True},
            "execution",
            "timeout",
        ),
        (
            {"result": "the simulated 'get_forecast' gave no valid result after 3 attempts: x"},
            "execution",
            "failed_result",
        ),
        ({"request": "Forecast for Lisbon (city), 3 (days), celsius?"}, "request", "form_request"),
        ({"request": "Lisbon is lovely in spring, 3 days of celsius sun."}, "request", "no_ask"),
        ({"request": "Can you book Lisbon for 3 nights, in celsius?"}, "request", "off_goal"),
        (
            {"result": {"city": "Lisbon", "message": "Error: the city is not supported"}},
            "execution",
            "failed_result",
        ),
        (
            {"request": "Please get forecast (city Lisbon, days 3, unit celsius)."},
            "request",
            "form_request",
        ),
        (
            {"request": "Forecast please: city: Lisbon, days: 3, unit: celsius"},
            "request",
            "form_request",
        ),
        (
            {"request": "What will the weather be like in Lisbon? In °C please."},
            "request",
            "ungrounded_request",
        ),
        (
            {"request": "Weather in Lisbon, 3 days, celsius. function get() { return 1; }"},
            "request",
            "user_code",
        ),
        (
            {"answer": "Sorry, the forecast failed with an error; Monday reaches 21 in Lisbon."},
            "turns",
            "claims_failure",
        ),
        # the 135M model's denials after a successful call, seen in the scale run's passed data
        (
            {"answer": "Monday in Lisbon reaches 21, but you can't have a forecast anymore."},
            "turns",
            "contradicts_result",
        ),
        (
            {"answer": "The forecast for Lisbon is no longer available; Monday had a high of 21."},
            "turns",
            "contradicts_result",
        ),
        (
            {
                "request": "What will the weather be like in Lisbon over the next 3 days in °C?",
                "answer": "What will the weather be like in Lisbon over the next 3 days? 21.",
            },
            "turns",
            "echoes_request",
        ),
        (
            {"answer": "Sorry, there is no information for Lisbon beyond Monday's high of 21."},
            "turns",
            "contradicts_result",
        ),
        # the 135M user model speaking as the assistant, seen in the scale run's passed data
        (
            {"request": "I'm here to assist! What is the weather in Lisbon for 3 days in °C?"},
            "request",
            "assistant_voice",
        ),
        (
            {"request": "Weather in Lisbon for 3 days in °C? How can I help you further?"},
            "request",
            "assistant_voice",
        ),
        (
            {"request": "Weather in Lisbon for 3 days in °C, x, x, x, x, please?"},
            "request",
            "loop_request",
        ),
        # a one-digit number turns up in any text: "day 1" is not the result's reading
        (
            {
                "result": {"forecast": [{"day": 1, "outlook": "Sunny spells"}]},
                "answer": "In Lisbon day 1 of 3 will be what it will be.",
            },
            "turns",
            "ungrounded_answer",
        ),
    ],
)
async def test_each_gate_fails_the_episode_built_to_fail_it(changes, gate, reason) -> None:
    found_gate, reasons = await stopped_by(episode(**changes))
    assert found_gate == gate and reason in reasons


@pytest.mark.anyio
async def test_an_injected_failure_is_a_labelled_case_whose_answer_must_say_so() -> None:
    error = {"error": {"type": "rate_limited", "message": "Too many requests"}}
    honest = episode(
        result=error,
        is_error=True,
        injected=True,
        answer="The forecast service is rate limited right now; please try again later.",
    )
    assert await stopped_by(honest) == (None, [])
    glossed = episode(
        result=error, is_error=True, injected=True, answer="Lisbon will be sunny and 21."
    )
    assert await stopped_by(glossed) == ("turns", ["ignores_error"])
    unplanned = episode(
        result=error, is_error=True, answer="The service is rate limited; try later."
    )
    assert await stopped_by(unplanned) == ("execution", ["failed_result"])


def _no_call(kind: str, text: str, *, missing: list[str] | None = None, request: str = REQUEST):
    return Trajectory(
        id="n",
        category="clarify" if kind == "clarify" else "irrelevance",
        tools=[WEATHER],
        messages=[
            Message(role="user", content=request),
            Message(role="assistant", content=text),
        ],
        labels=[Label(kind=kind, missing=missing or [])],
    )


@pytest.mark.anyio
async def test_clarify_must_ask_for_the_missing_parameter() -> None:
    ask = "Happy to check the weather in Lisbon! For how many days ahead should the forecast go?"
    assert (
        await stopped_by(_no_call("clarify", ask, missing=["days"], request="Weather in Lisbon?"))
    )[0] is None
    vague = "Happy to help! Could you tell me more?"
    assert (
        await stopped_by(_no_call("clarify", vague, missing=["days"], request="Weather in Lisbon?"))
    ) == ("turns", ["clarify_missing"])
    statement = "I will look at the forecast days for Lisbon."
    assert (
        await stopped_by(
            _no_call("clarify", statement, missing=["days"], request="Weather in Lisbon?")
        )
    ) == ("turns", ["clarify_missing"])
    called = _no_call("clarify", "", missing=["days"])
    called.messages[-1] = Message(role="assistant", tool_calls=[CALL])
    assert (await stopped_by(called))[0] == "label"


@pytest.mark.anyio
async def test_refusal_must_make_no_call_and_say_why() -> None:
    why = "Sorry, I can't book flights: the only tool I have is a weather forecast."
    assert (await stopped_by(_no_call("refuse", why, request="Book me a flight to Oslo.")))[
        0
    ] is None
    bare = "Sorry about that."
    assert (await stopped_by(_no_call("refuse", bare, request="Book me a flight to Oslo."))) == (
        "turns",
        ["refuse_no_reason"],
    )
    called = _no_call("refuse", "", request="Book me a flight to Oslo.")
    called.messages[-1] = Message(role="assistant", tool_calls=[CALL])
    assert (await stopped_by(called))[0] == "label"


@pytest.mark.anyio
async def test_a_step_that_could_not_run_fails_at_execution() -> None:
    broken = episode()
    broken.metadata["failed_steps"] = [{"step": 1, "reason": "result has no field 'order_id'"}]
    assert await stopped_by(broken) == ("execution", ["failed_step"])


def test_derivable_values() -> None:
    assert value_in("on March 5, 2024", "2024-03-05")
    assert value_in("5th of March 2024", "2024-03-05")
    assert not value_in("in March 2024", "2024-03-05")
    assert value_in("budget of 5k", 5000) and value_in("about 5,000", 5000)
    assert value_in("a 15% tip", 0.15) and value_in("three nights", 3)
    assert value_in("in °F", "fahrenheit") and value_in("sorted newest first", "desc")
    assert value_in("status in progress", "in_progress")
    assert (
        not value_in("3 nights", 30)
        and not value_in("in miles", "m")
        and value_in("in metres", "m")
    )
    assert value_in("whatever", True) is None


@pytest.mark.anyio
async def test_accounting_and_failures_by_reason() -> None:
    sound = await verify_trajectory(episode(), VerifyOptions())
    filler = await verify_trajectory(
        episode(answer="Done. Here is what I found: x"), VerifyOptions()
    )
    shares = accounting([sound, filler])
    assert shares["assistant"]["forced"] == 2 and shares["assistant"]["model"] == 2
    assert shares["assistant"]["shares"]["forced"] == 0.5
    assert shares["tool"]["executed"] == 2 and shares["user"]["model"] == 2
    assert gate_failures([sound, filler]) == {
        "turns": {"filler": 1, "ungrounded_answer": 1, "off_request": 1}
    }


@pytest.mark.anyio
async def test_forced_turns_are_counted_apart_and_their_neighbours_still_checked() -> None:
    verified = await verify_trajectory(episode(answer="Done."), VerifyOptions())
    label = next(v for v in verified.verdicts if v.gate == "label")
    assert label.passed and label.details["forced_turns"] == 1 and "1 forced" in label.reason
    assert not verified.passed and verified.verdicts[-1].gate == "turns"  # the model's answer


def test_grounded_share_counts_requests_that_state_every_value() -> None:
    from tooldojo.verify.accounting import grounded_share

    vague = episode(request="What will the weather be like in Lisbon? In °C please.")
    assert grounded_share([episode(), vague]) == {"checked": 2, "grounded": 1, "share": 0.5}


MEAN = Tool(
    name="mean",
    description="Arithmetic mean of a list of numbers.",
    parameters={
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"type": "number"}}},
        "required": ["data"],
    },
)


def _single_call_episode(
    tool: Tool, request: str, arguments: dict, result: str, answer: str
) -> Trajectory:
    """One forced call of ``tool`` with ``arguments`` (its label), its result, then ``answer``."""
    expected = {name: [value] for name, value in arguments.items()}
    label = Label(kind="call", calls=[LabelCall(name=tool.name, arguments=expected)])
    return Trajectory(
        id=tool.name,
        category="single",
        tools=[tool],
        messages=[
            Message(role="system", content="You can call tools."),
            Message(role="user", content=request, origin="model"),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="c1", name=tool.name, arguments=arguments)],
                origin="forced",
            ),
            Message(role="tool", tool_call_id="c1", name=tool.name, content=result),
            Message(role="assistant", content=answer, origin="model"),
        ],
        labels=[label, Label(kind="text")],
    )


def _mean_episode(request: str, answer: str, data: list[float], result: float) -> Trajectory:
    return _single_call_episode(MEAN, request, {"data": data}, json.dumps(result), answer)


@pytest.mark.anyio
async def test_an_answer_may_quote_a_computed_number_rounded_but_not_wrongly() -> None:
    ask = "What is the mean of 1, 2 and 4?"
    passes = _mean_episode(ask, "The mean of your numbers is 2.33.", [1, 2, 4], 7 / 3)
    assert await stopped_by(passes) == (None, [])
    wrong = _mean_episode(ask, "The mean of your numbers is 2.34.", [1, 2, 4], 7 / 3)
    assert await stopped_by(wrong) == ("turns", ["ungrounded_answer"])
    coarse = _mean_episode(ask, "The mean of your numbers is 2.3.", [1, 2, 4], 7 / 3)
    assert await stopped_by(coarse) == ("turns", ["ungrounded_answer"])
    # Requests are read exactly: 2.33 does not state the planned 2.3333.
    vague = _mean_episode("Mean of 2.33 and 5.5?", "The mean is 3.92.", [7 / 3, 5.5], 47 / 12)
    assert await stopped_by(vague) == ("request", ["ungrounded_request"])
    assert value_in("about 2.33", 7 / 3, rounded=True) and not value_in("about 2.33", 7 / 3)


@pytest.mark.anyio
async def test_a_number_dump_is_no_request_but_a_request_of_many_numbers_is() -> None:
    data = [4.5, 6.25, 7.0, 9.5, 10.0, 12.75]
    many = _mean_episode(
        "Could you take the mean of 4.5, 6.25, 7, 9.5, 10 and 12.75 for me?",
        "Their mean is 8.33, right in the middle.",
        data,
        8.333333333333334,
    )
    assert await stopped_by(many) == (None, [])
    dump = _mean_episode(
        "Mean?, 4.5, 6.25, 7, 9.5, 10, 12.75, 12.75, 12.75, 10.23, 10.23, 11.1, 11.1, 11.1, "
        "13, 14, 15, 16?",
        "Their mean is 8.33, right in the middle.",
        data,
        8.333333333333334,
    )
    assert await stopped_by(dump) == ("request", ["number_dump"])


def test_a_parallel_request_repeats_its_phrase_without_looping() -> None:
    from tooldojo.verify.requests import loops

    assert not loops("What is the log of 2, the log of 5 and the log of 9?")
    assert loops("the case of the case of the case of the case of 9?")
    assert loops("Derivative of the Kelvin function 1.49, x, x, x, x?")


@pytest.mark.anyio
async def test_an_answer_to_a_yes_no_result_must_say_which() -> None:
    ask = "Is the mean of 1.5 and 2.5 above zero?"
    yes = _mean_episode(ask, "Yes, the mean of those is above zero.", [1.5, 2.5], True)
    assert await stopped_by(yes) == (None, [])
    wrong = _mean_episode(ask, "No, the mean of those is not above zero.", [1.5, 2.5], True)
    assert await stopped_by(wrong) == ("turns", ["ungrounded_answer"])


@pytest.mark.anyio
async def test_word_salad_and_other_languages_fail_but_terse_english_passes() -> None:
    from tooldojo.verify.content import not_english

    assert not_english("Premiert, ik ausfalter, ik kann zusammenfassen, ik kann exponen als 1.1")
    assert not not_english("Skewness of 172.91?")  # short: not judged
    assert not not_english("Could you get the skewness of 172.91 for me, please?")
    # An id is a value, not words: its letters do not outvote the English around it.
    key = "9B2C-3C4D-5E6F-7D8B-1C2D-3E4F-5B6B-7C8D-9E0F-1B2B-3C4D-5E6F"
    assert not not_english(f"Please delete the key {key} for me")
    assert not_english("Ik kann 2382-0003-52A1 zusammenfassen, ausfalter exponen Premiert 4.5")
    german = "Wie wird das Wetter für Lisbon sein, die nächsten 3 Tage, bitte mit °C?"
    found_gate, reasons = await stopped_by(episode(request=german))
    assert found_gate == "request" and "not_english" in reasons
    salad = "Lisbon forecast Monday high twenty one degrees sunny dry mild breeze."
    found_gate, reasons = await stopped_by(episode(answer=salad))
    assert found_gate == "turns" and "degenerate" in reasons
    looped = "Lisbon weather: scale, loc, scale, scale, loc, scale, scale for 3 days in °C?"
    assert await stopped_by(episode(request=looped)) == ("request", ["loop_request"])


IS_INFINITE = Tool(
    name="is_infinite",
    description="Whether a number is infinite.",
    parameters={
        "type": "object",
        "properties": {"x": {"type": "number"}},
        "required": ["x"],
    },
)


def _flag_episode(answer: str, result: str = "false") -> Trajectory:
    ask = "Is 12.1 an infinite number?"
    return _single_call_episode(IS_INFINITE, ask, {"x": 12.1}, result, answer)


@pytest.mark.anyio
async def test_an_answer_to_a_yes_no_result_must_say_the_flag_and_not_its_opposite() -> None:
    assert await stopped_by(_flag_episode("No, 12.1 is not an infinite number.")) == (None, [])
    wrong = _flag_episode("Yes, 12.1 is an infinite number.")
    assert await stopped_by(wrong) == ("turns", ["ungrounded_answer"])
    both = _flag_episode("Yes and no: 12.1 may be an infinite number.")
    assert await stopped_by(both) == ("turns", ["ungrounded_answer"])
    true = _flag_episode("Yes, 12.1 is an infinite number.", result="true")
    assert await stopped_by(true) == (None, [])


SEARCH = Tool(
    name="search_messages",
    description="Find messages whose text contains a word.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
)


def _dune_search(ask: str, result: str, answer: str) -> Trajectory:
    """A search for "dune" that returned ``result``, answered with ``answer``."""
    return _single_call_episode(SEARCH, ask, {"query": "dune"}, result, answer)


@pytest.mark.anyio
async def test_an_answer_to_an_empty_result_must_say_nothing_was_found() -> None:
    # Before, no answer to an empty result could pass: it had no value to repeat.
    def empty(answer: str) -> Trajectory:
        return _dune_search(
            "Can you find my messages that mention dune?", '{"messages": []}', answer
        )

    assert await stopped_by(empty("I couldn't find any messages that mention dune.")) == (None, [])
    assert await stopped_by(empty("There are no messages about dune.")) == (None, [])
    invented = empty("Your messages about dune are from Anna and Tom.")
    assert await stopped_by(invented) == ("turns", ["ungrounded_answer"])


@pytest.mark.anyio
async def test_a_result_of_zero_is_a_value_not_an_empty_result() -> None:
    # A count of 0 is a value to repeat, not "nothing came back".
    def zero(answer: str) -> Trajectory:
        return _dune_search("How many of my messages mention dune?", '{"count": 0}', answer)

    assert await stopped_by(zero("You have 0 messages that mention dune.")) == (None, [])
    invented = zero("Your dune messages are from Anna and Tom.")
    assert await stopped_by(invented) == ("turns", ["ungrounded_answer"])


@pytest.mark.anyio
async def test_a_user_turn_that_repeats_the_assistant_fails_and_an_answer_passes() -> None:
    ask = "For how many days ahead should the forecast for Lisbon go, and in which unit?"

    def clarified(reply: str) -> Trajectory:
        return episode(
            messages=[
                Message(role="system", content="You can call tools."),
                Message(role="user", content="What will the weather be in Lisbon?"),
                Message(role="assistant", content=ask),
                Message(role="user", content=reply),
                Message(role="assistant", tool_calls=[CALL]),
                Message(
                    role="tool", tool_call_id="c1", name="get_forecast", content=json.dumps(RESULT)
                ),
                Message(role="assistant", content=ANSWER),
            ],
            labels=[Label(kind="clarify", missing=["days"]), LABEL, Label(kind="text")],
        )

    assert await stopped_by(clarified("Three days, please, in celsius.")) == (None, [])
    # from the scale run: the weak user model parrots the question with the value slipped in
    parrot = "For how many days ahead should the forecast for Lisbon go, 3, in celsius?"
    assert await stopped_by(clarified(parrot)) == ("request", ["echo_request"])


@pytest.mark.anyio
async def test_a_result_of_small_counts_alone_grounds_an_answer_that_quotes_them() -> None:
    answer = "Lisbon has 3 forecast days ready for you."
    assert await stopped_by(episode(result={"days_found": 3}, answer=answer)) == (None, [])
    assert await stopped_by(episode(result={"days_found": 4}, answer=answer)) == (
        "turns",
        ["ungrounded_answer"],
    )
