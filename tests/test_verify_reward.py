"""The gated reward: properties (hypothesis) and the TRL / verl entry points."""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from tooldojo.llm.codecs import get_codec
from tooldojo.model import Label, LabelCall, Tool, ToolCall
from tooldojo.verify.label import calls_mismatch, shapes_of
from tooldojo.verify.reward import (
    FORMAT_CREDIT,
    compute_score,
    gated_reward,
    reward_breakdown,
    tool_call_reward,
)

HERMES = get_codec("hermes")
PYTHONIC = get_codec("pythonic")

SCHEMA_TYPE = {str: "string", int: "integer", bool: "boolean"}
names = st.text(string.ascii_lowercase, min_size=1, max_size=6).map(lambda s: "p_" + s)
scalars = st.one_of(
    st.text(string.ascii_letters + string.digits, min_size=1, max_size=8),
    st.integers(-1000, 1000),
    st.booleans(),
)


@st.composite
def labelled_calls(draw: st.DrawFn) -> tuple[list[Tool], Label, list[ToolCall]]:
    """Tools, a label and a call list that is exactly correct for it."""
    n_calls = draw(st.integers(1, 3))
    tools: list[Tool] = []
    expected: list[LabelCall] = []
    correct: list[ToolCall] = []
    for i in range(n_calls):
        params = draw(st.dictionaries(names, scalars, min_size=1, max_size=4))
        optional = draw(st.sets(st.sampled_from(sorted(params))))
        schema_props = {k: {"type": SCHEMA_TYPE[type(v)]} for k, v in params.items()}
        name = f"tool_{i}"
        tools.append(
            Tool(
                name=name,
                parameters={
                    "type": "object",
                    "properties": schema_props,
                    "required": sorted(set(params) - optional),
                },
            )
        )
        expected.append(
            LabelCall(
                name=name,
                arguments={k: ([v, ""] if k in optional else [v]) for k, v in params.items()},
            )
        )
        correct.append(ToolCall(name=name, arguments=dict(params)))
    return tools, Label(kind="call", calls=expected), correct


def wrong_value(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return str(value) + "zz"


@settings(max_examples=150, deadline=None)
@given(labelled_calls(), st.randoms(use_true_random=False))
def test_perfect_answer_scores_the_maximum(case, rng) -> None:
    tools, label, calls = case
    rng.shuffle(calls)  # order-free
    for codec_name in ("hermes", "pythonic", "json"):
        text = get_codec(codec_name).format_calls(calls)
        breakdown = reward_breakdown(text, label, tools, codec_name)
        assert breakdown.reward == 1.0 and breakdown.exact, (codec_name, text)
    assert calls_mismatch(calls, label.calls, shapes_of(tools)) is None


@settings(max_examples=150, deadline=None)
@given(labelled_calls(), st.data())
def test_reward_never_rises_when_an_argument_is_made_wrong(case, data) -> None:
    tools, label, calls = case
    previous = gated_reward(HERMES.format_calls(calls), label, tools)
    # Break arguments one at a time, in a random order; the reward must never go up.
    slots = [(i, key) for i, call in enumerate(calls) for key in call.arguments]
    order = data.draw(st.permutations(slots))
    for i, key in order:
        calls[i].arguments[key] = wrong_value(calls[i].arguments[key])
        current = gated_reward(HERMES.format_calls(calls), label, tools)
        assert current <= previous + 1e-12
        assert current < 1.0
        previous = current
    assert previous >= FORMAT_CREDIT  # still parseable calls to the right tools


@settings(max_examples=200, deadline=None)
@given(labelled_calls(), st.text(max_size=60))
def test_unparseable_output_scores_zero(case, noise) -> None:
    tools, label, calls = case
    text = HERMES.format_calls(calls)
    cut = text[: text.index("}")]  # a call whose JSON is cut off
    assert gated_reward(cut + noise.replace("}", ""), label, tools) == 0.0
    assert gated_reward('<tool_call>{"name": </tool_call>', label, tools) == 0.0
    assert gated_reward(noise.replace("<", ""), label, tools) == 0.0  # prose where a call is due


def test_graded_scores_name_keys_values_and_count() -> None:
    tools = [
        Tool(
            name="f",
            parameters={
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        )
    ]
    label = Label(kind="call", calls=[LabelCall(name="f", arguments={"a": ["x"], "b": [1]})])

    def reward(*calls: ToolCall) -> float:
        return gated_reward(HERMES.format_calls(list(calls)), label, tools)

    perfect = reward(ToolCall(name="f", arguments={"a": "x", "b": 1}))
    one_wrong = reward(ToolCall(name="f", arguments={"a": "x", "b": 2}))
    one_missing = reward(ToolCall(name="f", arguments={"a": "x"}))
    wrong_name = reward(ToolCall(name="g", arguments={"a": "x", "b": 1}))
    doubled = reward(*[ToolCall(name="f", arguments={"a": "x", "b": 1})] * 2)
    assert perfect == 1.0
    assert one_wrong == FORMAT_CREDIT + (1 - FORMAT_CREDIT) * (0.2 + 0.3 + 0.25)
    assert one_missing < one_wrong < perfect
    assert wrong_name == FORMAT_CREDIT
    assert doubled == FORMAT_CREDIT + (1 - FORMAT_CREDIT) * 0.5  # wrong count halves G


def test_text_labels_reward_answers_without_calls() -> None:
    refuse = Label(kind="refuse")
    assert gated_reward("Sorry, no tool can do that.", refuse) == 1.0
    call = HERMES.format_calls([ToolCall(name="f", arguments={})])
    assert gated_reward(call, refuse) == 0.0
    assert gated_reward("   ", refuse) == 0.0


def test_trl_reward_function_accepts_strings_messages_and_keyword_columns() -> None:
    label = Label(kind="call", calls=[LabelCall(name="f", arguments={"a": ["x"]})])
    good = ToolCall(name="f", arguments={"a": "x"})
    completions = [
        HERMES.format_calls([good]),
        [{"role": "assistant", "content": "", "tool_calls": [good.to_openai()]}],
        [{"role": "assistant", "content": PYTHONIC.format_calls([good])}],
        "no idea",
    ]
    rewards = tool_call_reward(
        prompts=["p"] * 4,
        completions=completions,
        completion_ids=[[1]] * 4,
        label=[label.model_dump_json()] * 4,
        tools=[None] * 4,
        codec=["hermes", "hermes", "pythonic", "hermes"],
        other_column=[1, 2, 3, 4],
    )
    assert rewards == [1.0, 1.0, 1.0, 0.0]
    assert tool_call_reward.__name__ == "tool_call_reward"


def test_verl_compute_score_reads_tools_and_codec_from_extra_info() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "area",
                "parameters": {"type": "object", "properties": {"r": {"type": "number"}}},
            },
        }
    ]
    truth = json.dumps([{"area": {"r": [2.0]}}])  # BFCL ground-truth form is accepted too
    extra = {"tools": json.dumps(tools), "codec": "pythonic"}
    assert compute_score("tooldojo", "[area(r=2)]", truth, extra) == 1.0  # int for number
    assert compute_score("tooldojo", "[area(r=3)]", truth, extra) < 1.0
    assert compute_score("tooldojo", "[area(r=", truth, extra) == 0.0


def test_text_rewards_fail_filler_code_and_empty_refusals():
    from tooldojo.verify.reward import reward_breakdown as breakdown

    text = {"kind": "text"}
    assert breakdown("Done. Here is what I found: {}", text).reward == 0.0
    assert breakdown("Use get_weather(city='Oslo') for that.", text).reward == 0.0
    assert breakdown("It is 21 degrees in Oslo today.", text).reward == 1.0
    refuse = {"kind": "refuse"}
    assert breakdown("Okay then.", refuse).reward == 0.5
    assert breakdown("Sorry, I can't book flights with these tools.", refuse).reward == 1.0
    clarify = {"kind": "clarify", "missing": ["city"]}
    assert breakdown("I will check the city.", clarify).reward == 0.5
    assert breakdown("Which city do you mean?", clarify).reward == 1.0
