"""The request gate's ``loop_request`` allows a parallel request one phrase per planned call.

"the logarithm of 2, the logarithm of 3, the logarithm of 4 and the logarithm of 5" is how a
person asks for four parallel calls; a fixed allowance of three phrases rejected it as a loop.
"""

from __future__ import annotations

from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory, Verdict
from tooldojo.verify.requests import loops, parallel_calls, request_gate
from tooldojo.verify.turns import assistant_turns

LOG = Tool(
    name="logarithm",
    description="The natural logarithm of a number.",
    parameters={"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
)


def _call(x: int, id: str = "") -> ToolCall:
    return ToolCall(id=id, name="logarithm", arguments={"x": x})


def _label(*planned: int) -> Label:
    return Label(
        kind="call", calls=[LabelCall(name="logarithm", arguments={"x": [x]}) for x in planned]
    )


def _request(values: list[int]) -> str:
    phrases = [f"the logarithm of {value}" for value in values]
    return f"What is {', '.join(phrases[:-1])} and {phrases[-1]}?"


def _episode(text: str, planned: list[int]) -> Trajectory:
    """One user request, then one assistant turn making the ``planned`` calls in parallel."""
    calls = [_call(x, f"c{i}") for i, x in enumerate(planned)]
    results = [Message(role="tool", tool_call_id=c.id, content='{"value": 1.0}') for c in calls]
    return Trajectory(
        id="parallel",
        tools=[LOG],
        messages=[
            Message(role="user", content=text),
            Message(role="assistant", tool_calls=calls),
            *results,
            Message(role="assistant", content="Each logarithm is 1.0."),
        ],
        labels=[_label(*planned), Label(kind="text")],
        category="parallel",
    )


def _gate(trajectory: Trajectory) -> Verdict:
    return request_gate(assistant_turns(trajectory), trajectory)


def test_a_four_call_parallel_request_may_say_its_phrase_four_times() -> None:
    trajectory = _episode(_request([2, 3, 4, 5]), [2, 3, 4, 5])
    assert parallel_calls(assistant_turns(trajectory), trajectory.messages, 0) == 4
    verdict = _gate(trajectory)
    assert verdict.passed, verdict.reason


def test_a_phrase_past_the_planned_calls_still_loops() -> None:
    verdict = _gate(_episode(_request([2, 3, 4, 5, 6, 7, 8]), [2, 3, 4, 5]))
    assert not verdict.passed and "loop_request" in verdict.details["reasons"]


def test_a_single_call_request_that_repeats_its_phrase_still_loops() -> None:
    verdict = _gate(_episode(_request([2, 3, 4, 5]), [2]))
    assert not verdict.passed and "loop_request" in verdict.details["reasons"]
    assert loops("Derivative of x, x, x at 1.49?", parallel=8)  # a word thrice in a row


def test_the_allowance_is_the_calls_planned_after_that_user_message() -> None:
    """A later four-call turn gives an earlier one-call request no extra repeats."""
    messages = [
        Message(role="user", content=_request([2, 3, 4, 5])),
        Message(role="assistant", tool_calls=[_call(2, "a")]),
        Message(role="tool", tool_call_id="a", content="1"),
        Message(role="user", content=_request([2, 3, 4, 5])),
        Message(role="assistant", tool_calls=[_call(x, f"b{x}") for x in (2, 3, 4, 5)]),
    ]
    trajectory = Trajectory(
        id="t", tools=[LOG], messages=messages, labels=[_label(2), _label(2, 3, 4, 5)]
    )
    turns = assistant_turns(trajectory)
    assert [parallel_calls(turns, messages, position) for position in (0, 3)] == [1, 4]
    verdict = request_gate(turns, trajectory)
    assert verdict.details["errors"] == ["user message 0: loops"]


def test_the_user_simulator_allows_the_same_repeats_as_the_gate() -> None:
    """A draft the gate would pass is not retried (nor the scenario dropped) as looping."""
    from tooldojo.agents.user import RequestCheck

    text = _request([2, 3, 4, 5])
    four = RequestCheck(required=[2, 3, 4, 5], forbidden=[], tool_names=[], parallel=4)
    one = RequestCheck(required=[2, 3, 4, 5], forbidden=[], tool_names=[])
    assert not any("loops" in problem for problem in four.problems(text))
    assert any("loops" in problem for problem in one.problems(text))
