"""``$result`` references resolve to the parameter's type where that loses nothing.

A simulated tool writes ``{"total": "50"}`` where the next tool takes an integer: the forced
call (guidance) and the label gate both read the reference, so both must see 50, while junk
such as ``");"`` stays as it is and the schema gate fails it.
"""

from __future__ import annotations

import json

import pytest

from tooldojo.agents.guidance import forced_completion
from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify import VerifyOptions, verify_trajectory
from tooldojo.verify.label import coerce_to_schema, label_gate
from tooldojo.verify.turns import assistant_turns

COUNT = Tool(
    name="count_items",
    description="Count the items in the cart.",
    parameters={"type": "object", "properties": {}},
)
PAGE = Tool(
    name="list_page",
    description="List a page of cart items.",
    parameters={
        "type": "object",
        "properties": {"limit": {"type": "integer"}},
        "required": ["limit"],
    },
)
TOOLS = [COUNT, PAGE]
LABELS = [
    Label(kind="call", calls=[LabelCall(name="count_items")]),
    Label(
        kind="call",
        calls=[
            LabelCall(
                name="list_page",
                arguments={"limit": [{"$result": {"step": 0, "call": 0, "pointer": "/total"}}]},
            )
        ],
    ),
    Label(kind="text"),
]


def _history(total: object) -> list[Message]:
    """The episode up to the second (referring) call: one count and its result."""
    return [
        Message(role="user", content="Count my cart items, then list that many."),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="count_items")]),
        Message(
            role="tool", tool_call_id="c1", name="count_items", content=json.dumps({"total": total})
        ),
    ]


def _episode(total: object, second: list[ToolCall] | None = None) -> Trajectory:
    """The two-step episode; the second call is the forced one (as guidance writes it)
    unless ``second`` is given."""
    history = _history(total)
    calls = second or forced_completion(LABELS[1], history, TOOLS, "m").tool_calls
    return Trajectory(
        id="refs",
        tools=TOOLS,
        messages=[
            *history,
            Message(role="assistant", tool_calls=calls),
            Message(role="tool", tool_call_id=calls[0].id, content='{"items": []}'),
            Message(role="assistant", content="Your cart has 50 items; the page is empty."),
        ],
        labels=LABELS,
        category="multi_step",
    )


async def _verify(trajectory: Trajectory) -> Trajectory:
    return await verify_trajectory(trajectory, VerifyOptions(gates=["format", "schema", "label"]))


@pytest.mark.anyio
async def test_a_digit_string_result_resolves_to_an_integer_and_passes() -> None:
    forced = _episode("50")
    assert forced.messages[3].tool_calls[0].arguments == {"limit": 50}
    assert (await _verify(forced)).passed is True
    # A model that called with 50 itself matches the label too (not '50' vs 50).
    own = _episode("50", [ToolCall(id="c2", name="list_page", arguments={"limit": 50})])
    verdict = label_gate(assistant_turns(own), TOOLS, own.labels, own.messages)
    assert verdict.passed, verdict.reason


@pytest.mark.anyio
async def test_an_uncoercible_result_stays_and_fails_the_schema_gate() -> None:
    forced = _episode(");")
    assert forced.messages[3].tool_calls[0].arguments == {"limit": ");"}
    result = await _verify(forced)
    assert result.passed is False
    assert result.verdicts[-1].gate == "schema" and "limit" in result.verdicts[-1].reason


def test_coercion_is_lossless_or_nothing() -> None:
    integer, number, boolean, string = (
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "string"},
    )
    assert coerce_to_schema("50", integer) == 50
    assert coerce_to_schema("-3", {"type": ["integer", "null"]}) == -3
    assert coerce_to_schema(50.0, integer) == 50 and type(coerce_to_schema(50.0, integer)) is int
    assert coerce_to_schema("2.5", number) == 2.5
    assert coerce_to_schema("50", number) == 50
    assert coerce_to_schema("true", boolean) is True and coerce_to_schema("False", boolean) is False
    assert coerce_to_schema(50, string) == "50" and coerce_to_schema(2.5, string) == "2.5"
    # Not the same value in another spelling: left for the schema gate to judge.
    for value, schema in [
        (");", integer),
        ("2.5", integer),
        ("007", integer),
        (2.5, integer),
        ("1e999", number),
        ("yes", boolean),
        (True, string),
        ("50", {}),
        ("50", {"anyOf": [{"type": "integer"}]}),
    ]:
        assert coerce_to_schema(value, schema) == value, (value, schema)
    assert coerce_to_schema(True, integer) is True  # a bool is no integer in JSON
