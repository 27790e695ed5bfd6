"""Format, schema and label gates, result references, and the gate pipeline."""

from __future__ import annotations

import json

import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.llm.codecs import get_codec
from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify import DEFAULT_GATES, VerifyOptions, verify_trajectory
from tooldojo.verify.accounting import gate_failures
from tooldojo.verify.format import format_gate
from tooldojo.verify.label import label_gate
from tooldojo.verify.schema import schema_gate, validator_of
from tooldojo.verify.turns import assistant_turns

WEATHER = Tool(
    name="get_current_weather",
    description="Weather now.",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1},
        },
        "required": ["location"],
    },
)
ORDER = Tool(
    name="create_order",
    parameters={
        "type": "object",
        "properties": {"item": {"type": "string"}, "qty": {"type": "number"}},
        "required": ["item"],
    },
)
SHIP = Tool(
    name="ship_order",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
)


def call_label(name: str, **arguments: list) -> Label:
    return Label(kind="call", calls=[LabelCall(name=name, arguments=arguments)])


def trajectory(
    assistant: list[Message], labels: list[Label], tools: list[Tool] | None = None, **kw
) -> Trajectory:
    messages = [Message(role="user", content="What is the weather in Paris?")]
    messages += assistant
    return Trajectory(
        id=kw.pop("id", "t1"),
        tools=tools or [WEATHER],
        messages=messages,
        labels=labels,
        category=kw.pop("category", "single"),
    )


def calls_message(*calls: ToolCall) -> Message:
    return Message(role="assistant", tool_calls=list(calls))


PARIS = call_label("get_current_weather", location=["Paris", "Paris, France"], unit=["", "celsius"])


async def verify(traj: Trajectory, **options) -> Trajectory:
    return await verify_trajectory(traj, VerifyOptions(**options))


@pytest.mark.anyio
async def test_structured_call_passes_all_default_gates() -> None:
    call = ToolCall(id="c1", name="get_current_weather", arguments={"location": "paris, france"})
    result = await verify(trajectory([calls_message(call)], [PARIS]))
    assert result.passed is True
    assert [v.gate for v in result.verdicts] == list(DEFAULT_GATES)
    assert all(v.passed and v.score == 1.0 for v in result.verdicts)


@pytest.mark.anyio
async def test_raw_completion_text_is_parsed_with_the_codec() -> None:
    hermes = get_codec("hermes")
    text = hermes.format_calls(
        [ToolCall(name="get_current_weather", arguments={"location": "Paris"})]
    )
    result = await verify(trajectory([Message(role="assistant", content=text)], [PARIS]))
    assert result.passed is True
    pythonic = 'get_current_weather(location="Paris", unit="celsius")'
    result = await verify(
        trajectory([Message(role="assistant", content=f"[{pythonic}]")], [PARIS]), codec="pythonic"
    )
    assert result.passed is True


@pytest.mark.anyio
async def test_format_gate_fails_on_malformed_call_and_prose_where_call_expected() -> None:
    broken = Message(
        role="assistant", content='<tool_call>{"name": "get_current_weather", </tool_call>'
    )
    result = await verify(trajectory([broken], [PARIS]))
    assert result.passed is False
    assert [v.gate for v in result.verdicts] == ["format"]  # short-circuits
    prose = Message(role="assistant", content="It is sunny in Paris.")
    result = await verify(trajectory([prose], [PARIS]))
    assert result.verdicts[0].reason == "turn 0: expected a tool call, got text"


def test_format_gate_accepts_text_where_text_is_expected_but_not_empty_answers() -> None:
    refuse = Label(kind="refuse")
    ok = trajectory([Message(role="assistant", content="I cannot do that.")], [refuse])
    assert format_gate(assistant_turns(ok)).passed
    empty = trajectory([Message(role="assistant", content="  ")], [refuse])
    assert not format_gate(assistant_turns(empty)).passed
    assert not format_gate([]).passed


@pytest.mark.anyio
async def test_schema_gate_rejects_unknown_tool_and_invalid_arguments() -> None:
    unknown = calls_message(ToolCall(name="get_forecast", arguments={"location": "Paris"}))
    result = await verify(trajectory([unknown], [PARIS]))
    assert result.verdicts[-1].gate == "schema"
    assert "unknown tool 'get_forecast'" in result.verdicts[-1].reason
    bad = calls_message(
        ToolCall(name="get_current_weather", arguments={"location": "Paris", "unit": "kelvin"})
    )
    verdict = schema_gate(assistant_turns(trajectory([bad], [PARIS])), [WEATHER])
    assert not verdict.passed
    assert "get_current_weather/unit" in verdict.reason and "kelvin" in verdict.reason


@pytest.mark.anyio
async def test_schema_failures_count_by_the_failing_keyword_not_by_the_tool_name() -> None:
    """Error lines start with the tool's name ("turn 0: create_order: 'item' is a required
    property"): read as a reason code it made one reason per snake_case tool."""
    missing = calls_message(ToolCall(name="create_order", arguments={"qty": 2}))
    wrong_type = calls_message(ToolCall(name="create_order", arguments={"item": 3}))
    unknown = calls_message(ToolCall(name="delete_order", arguments={}))
    order = call_label("create_order", item=["pen"])
    found = [
        await verify(trajectory([message], [order], [ORDER]))
        for message in (missing, wrong_type, unknown)
    ]
    assert [t.verdicts[-1].details["reasons"] for t in found] == [
        ["required"],
        ["type"],
        ["unknown_tool"],
    ]
    assert gate_failures(found) == {"schema": {"required": 1, "type": 1, "unknown_tool": 1}}


def test_format_and_label_failures_carry_codes() -> None:
    prose = trajectory([Message(role="assistant", content="It is sunny.")], [PARIS])
    empty = trajectory([Message(role="assistant", content=" ")], [Label(kind="refuse")])
    assert format_gate(assistant_turns(prose)).details["reasons"] == ["text_for_call"]
    assert format_gate(assistant_turns(empty)).details["reasons"] == ["empty_answer"]
    assert format_gate([]).failure_codes() == ["no_turn"]
    called = calls_message(ToolCall(name="get_current_weather", arguments={"location": "Rome"}))
    refused = trajectory([called], [Label(kind="refuse")])
    wrong = trajectory([called], [PARIS, PARIS])  # a wrong value and a label without a turn
    codes = [
        label_gate(assistant_turns(t), t.tools, t.labels, t.messages).failure_codes()
        for t in (refused, wrong)
    ]
    assert codes == [["expected_no_call"], ["value_error:string", "missing_turns"]]


def test_schema_validators_are_compiled_once_per_schema() -> None:
    same = Tool(name=WEATHER.name, parameters=json.loads(json.dumps(WEATHER.parameters)))
    assert validator_of(WEATHER) is validator_of(same)
    changed = Tool(name=WEATHER.name, parameters={**WEATHER.parameters, "required": []})
    assert validator_of(changed) is not validator_of(WEATHER)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "passes"),
    [
        ({"location": "Paris"}, True),
        ({"location": "PARIS, france."}, True),  # BFCL string normalization
        ({"location": "Paris", "unit": "celsius"}, True),
        ({"location": "Paris", "unit": "fahrenheit"}, False),
        ({"location": "Lyon"}, False),
        ({"location": "Paris", "days": 2}, False),  # not in the label: unexpected
        ({"unit": "celsius"}, False),  # missing required (schema passes? no: schema fails)
    ],
)
async def test_label_gate_values(arguments: dict, passes: bool) -> None:
    result = await verify(
        trajectory(
            [calls_message(ToolCall(name="get_current_weather", arguments=arguments))], [PARIS]
        )
    )
    assert result.passed is passes


def test_label_gate_int_for_number_and_order_free_parallel_with_exact_count() -> None:
    label = Label(
        kind="call",
        calls=[
            LabelCall(name="create_order", arguments={"item": ["pen"], "qty": [2.0]}),
            LabelCall(name="create_order", arguments={"item": ["ink"], "qty": [1.5]}),
        ],
    )
    swapped = calls_message(
        ToolCall(name="create_order", arguments={"item": "ink", "qty": 1.5}),
        ToolCall(name="create_order", arguments={"item": "pen", "qty": 2}),
    )
    traj = trajectory([swapped], [label], tools=[ORDER])
    assert label_gate(assistant_turns(traj), [ORDER], traj.labels, traj.messages).passed
    one = calls_message(ToolCall(name="create_order", arguments={"item": "pen", "qty": 2}))
    traj = trajectory([one], [label], tools=[ORDER])
    verdict = label_gate(assistant_turns(traj), [ORDER], traj.labels, traj.messages)
    assert not verdict.passed and "wrong_count" in verdict.reason


def test_label_gate_irrelevance_means_no_call_and_labels_need_turns() -> None:
    refuse = [Label(kind="refuse")]
    called = trajectory(
        [calls_message(ToolCall(name="get_current_weather", arguments={"location": "x"}))], refuse
    )
    verdict = label_gate(assistant_turns(called), [WEATHER], called.labels, called.messages)
    assert not verdict.passed and "expected no call (refuse)" in verdict.reason
    text = trajectory([Message(role="assistant", content="No tool fits.")], refuse)
    assert label_gate(assistant_turns(text), [WEATHER], text.labels, text.messages).passed
    missing = trajectory([Message(role="assistant", content="Hi")], [Label(kind="text"), PARIS])
    verdict = label_gate(assistant_turns(missing), [WEATHER], missing.labels, missing.messages)
    assert not verdict.passed and "2 labels but only 1" in verdict.reason


def _two_step(order_id_in_result: str, shipped_id: str, call_id: str = "c1") -> Trajectory:
    ref = {"$result": {"step": 0, "call": 0, "pointer": "/order/id"}}
    return Trajectory(
        id="multi",
        tools=[ORDER, SHIP],
        messages=[
            Message(role="user", content="Order a pen and ship it."),
            calls_message(ToolCall(id=call_id, name="create_order", arguments={"item": "pen"})),
            Message(
                role="tool",
                tool_call_id=call_id,
                name="create_order",
                content=json.dumps({"order": {"id": order_id_in_result}}),
            ),
            calls_message(ToolCall(id="c2", name="ship_order", arguments={"order_id": shipped_id})),
            Message(role="tool", tool_call_id="c2", content='{"status": "shipped"}'),
            Message(role="assistant", content="Your pen is on its way: order A-17 has shipped."),
        ],
        labels=[
            call_label("create_order", item=["pen"], qty=[""]),
            call_label("ship_order", order_id=[ref]),
            Label(kind="text"),
        ],
    )


@pytest.mark.anyio
async def test_result_references_resolve_against_recorded_tool_results() -> None:
    assert (await verify(_two_step("A-17", "A-17"))).passed is True
    assert (await verify(_two_step("A-17", "a 17"))).passed is True  # normalized string
    wrong = await verify(_two_step("A-17", "B-99"))
    assert wrong.passed is False and wrong.verdicts[-1].gate == "label"
    assert (await verify(_two_step("A-17", "A-17", call_id=""))).passed is True  # by position
    broken = _two_step("A-17", "A-17")
    broken.labels[1].calls[0].arguments["order_id"] = [
        {"$result": {"step": 0, "call": 0, "pointer": "/order/missing"}}
    ]
    result = await verify(broken)
    assert not result.passed and "reference unresolved" in result.verdicts[-1].reason


def test_options_reject_unknown_gates_and_missing_resources() -> None:
    with pytest.raises(ToolDojoError, match="unknown gate"):
        VerifyOptions(gates=["format", "vibes"]).ordered_gates()
    assert VerifyOptions(gates=["execution"]).ordered_gates() == ["execution"]  # recorded only
    with pytest.raises(ToolDojoError, match="judge"):
        VerifyOptions(gates=["judge"]).ordered_gates()
    # Order is always the canonical one, whatever the request order.
    assert VerifyOptions(gates=["label", "format"]).ordered_gates() == ["format", "label"]
