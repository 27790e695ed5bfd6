"""Goal-conditioned guidance of the synthesis assistant (none / kind / label)."""

from __future__ import annotations

import anyio
import pytest

from test_synth_orchestration import copying_user, request
from tooldojo.jsonl import read_jsonl
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Trajectory
from tooldojo.synth.pipeline import prepare_run, run_prepared
from tooldojo.verify.pipeline import VerifyOptions, verify_file


class ProseOnly:
    """An assistant that never calls a tool (like the embedded model at first); records the
    constraint of each request."""

    name = "prose-only"

    def __init__(self) -> None:
        self.constraints = []

    async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
        self.constraints.append(constraint)
        return Completion(text="Sure, I would be happy to help with that.", model=self.name)


async def synthesize(tmp_path, guidance):
    assistant = ProseOnly()
    models = {"user": ScriptedChatModel(copying_user, name="user"), "assistant": assistant}
    prepared = await prepare_run(
        request(
            tmp_path,
            n=12,
            models=models,
            guidance=guidance,
            categories=["single", "multi_step", "clarify", "irrelevance"],
        )
    )
    await run_prepared(prepared)
    out = tmp_path / "out"
    await verify_file(
        out / "trajectories.jsonl",
        out / "verified.jsonl",
        VerifyOptions(),
    )
    verified = list(read_jsonl(out / "verified.jsonl", Trajectory))
    return assistant, prepared.env.assistant.stats.as_dict(), verified


@pytest.mark.anyio
async def test_label_guidance_forces_calls_but_never_writes_text_for_the_model(tmp_path):
    assistant, stats, verified = await synthesize(tmp_path, "label")
    assert verified and stats["forced"] > 0 and "own" not in stats
    forced = [m for t in verified for m in t.messages if getattr(m, "origin", None) == "forced"]
    assert len(forced) == stats["forced"] and all(m.tool_calls for m in forced)
    assert any(c is not None and c.allow_text is False for c in assistant.constraints)
    # Text steps stay the model's own words, tried a few times and then kept as they are:
    # no filler stands in for them, and the turns gate drops what the model could not write.
    assert stats["failed_text"] > 0
    texts = {m.content for t in verified for m in t.assistant_turns() if not m.tool_calls}
    assert texts == {"Sure, I would be happy to help with that."}
    stopped = {t.verdicts[-1].gate for t in verified}
    assert not any(t.passed for t in verified) and stopped == {"turns"}, [
        v.reason for t in verified for v in t.verdicts if not v.passed
    ]


@pytest.mark.anyio
async def test_kind_guidance_constrains_call_steps_only(tmp_path):
    assistant, stats, verified = await synthesize(tmp_path, "kind")
    assert "forced" not in stats and "own" not in stats  # nothing replaced; text steps tried
    kinds = [
        c.allow_text for c in assistant.constraints if c is not None and c.kind == "tool_calls"
    ]
    assert kinds and not any(kinds)  # call steps: calls only; text steps: no constraint
    assert None in assistant.constraints
    assert not all(t.passed for t in verified)  # the prose-only model fails its call steps


def test_unknown_guidance_is_refused(tmp_path):
    from tooldojo.errors import ToolDojoError

    with pytest.raises(ToolDojoError, match="--guidance"):
        anyio.run(prepare_run, request(tmp_path, guidance="oracle"))


def test_prose_that_imitates_the_tool_protocol_is_not_an_answer():
    from tooldojo.agents.guidance import matches_label
    from tooldojo.model import Label

    label = Label(kind="text")
    echo = Completion(text='<tool_response>\n{"temp": 21}\n</tool_response>')
    assert not matches_label(echo, label, [], [])
    assert matches_label(Completion(text="It is 21 degrees."), label, [], [])


def _answered(result: str, request: str = "What is the weather in Oslo?"):
    from tooldojo.model import Message, ToolCall

    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Oslo"})
    return [
        Message(role="user", content=request),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="c1", content=result),
    ]


def test_result_values_are_what_the_result_adds():
    from tooldojo.agents.guidance import result_values

    messages = _answered('{"city": "Oslo", "result": [{"name": "temp c", "value": 4.5}]}')
    # "Oslo" was asked for and is an argument; the name and the reading are new.
    assert result_values(messages) == ["temp c", "4.5"]
    messages[-1].is_error = True  # a failed result grounds nothing
    assert result_values(messages) == []


def test_grounded_constraint_demands_the_value_and_prose():
    import re

    from tooldojo.agents.guidance import grounded_prose_constraint

    pattern = grounded_prose_constraint("4.5 C").json_schema["properties"]["answer"]["pattern"]
    assert re.fullmatch(pattern, "In Oslo it is 4.5 C right now.")
    assert not re.fullmatch(pattern, "In Oslo it is 4x5 C right now.")  # "." is literal
    assert not re.fullmatch(pattern, "In Oslo it is mild right now.")  # no value: no match
    assert not re.fullmatch(pattern, 'It is {"t": 4.5 C} now.')  # no braces or quotes


@pytest.mark.anyio
async def test_a_final_answer_retried_under_the_grounding_grammar_is_marked():
    from tooldojo.agents.assistant import AssistantAgent
    from tooldojo.model import Label

    answers = ["Sure, I can help.", '{"answer": "In Oslo it is 4.5 degrees today."}']
    agent = AssistantAgent(ScriptedChatModel(answers), guidance="kind")
    messages = _answered('{"city": "Oslo", "result": [{"name": "temp c", "value": 4.5}]}')
    completion = await agent.step(messages, [], seed=0, label=Label(kind="text"))
    assert completion.text == "In Oslo it is 4.5 degrees today."
    assert completion.model.startswith("grounded(")
    assert agent.stats.as_dict() == {"grounded_text": 1, "own_text": 1}


@pytest.mark.anyio
async def test_a_final_answer_is_written_from_the_request_and_results_alone():
    """The model sees the request and the results in one user message, no tool list; the
    answer is checked against the real conversation, and one that copies the view's lead
    line is tried again."""
    from tooldojo.agents.assistant import ANSWER_VIEW_LEAD, AssistantAgent
    from tooldojo.model import Label, Tool

    tool = Tool(name="get_weather", description="Weather now.", parameters={"type": "object"})
    messages = _answered('{"city": "Oslo", "temp_c": 4.5}')
    echo = f"{ANSWER_VIEW_LEAD} get_weather says 4.5 in Oslo."
    model = ScriptedChatModel([echo, '{"answer": "In Oslo it is 4.5 degrees right now."}'])
    completion = await AssistantAgent(model, guidance="kind").step(
        messages, [tool], seed=0, label=Label(kind="text")
    )
    assert completion.text == "In Oslo it is 4.5 degrees right now."
    shown, tools, _ = model.calls[0]
    assert tools == [] and [m.role for m in shown] == ["system", "user"]
    assert "What is the weather in Oslo?" in shown[1].content
    assert '- get_weather: {"city": "Oslo", "temp_c": 4.5}' in shown[1].content
    # Switched off, the model sees the whole conversation and the tools, as before.
    model = ScriptedChatModel(["In Oslo it is 4.5 degrees right now."])
    await AssistantAgent(model, guidance="kind", focused_answers=False).step(
        messages, [tool], seed=0, label=Label(kind="text")
    )
    shown, tools, _ = model.calls[0]
    assert tools == [tool] and [m.role for m in shown] == ["system", "user", "assistant", "tool"]


def test_an_answer_that_copies_its_prompt_is_caught():
    from tooldojo.agents.assistant import ANSWER_VIEW_LEAD, copies_prompt

    messages = _answered('{"city": "Bergen", "temp_c": 4.5}', "Weather in Bergen?")
    assert copies_prompt("In Bergen it is 4.5 degrees.", messages) is None
    assert "example (oslo)" in copies_prompt("In Oslo it is 4.5 with snow.", messages)
    assert "lead line" in copies_prompt(f"{ANSWER_VIEW_LEAD} 4.5 in Bergen", messages)
    # the conversation's own Oslo is no copy
    assert copies_prompt("In Oslo it is 4.5.", _answered('{"temp_c": 4.5}')) is None


@pytest.mark.anyio
async def test_text_tries_sample_with_a_repetition_penalty_unless_the_role_sets_one():
    from tooldojo.agents.assistant import TEXT_REPEAT_PENALTY, TEXT_TEMPERATURE, AssistantAgent
    from tooldojo.llm.base import SamplingParams
    from tooldojo.model import Label

    messages = _answered('{"city": "Oslo", "result": [{"name": "temp c", "value": 4.5}]}')
    answers = ["Sure, I can help.", '{"answer": "In Oslo it is 4.5 degrees today."}']
    model = ScriptedChatModel(answers)
    await AssistantAgent(model, guidance="kind").step(messages, [], 0, Label(kind="text"))
    tries = [sampling for _, _, sampling in model.calls]
    assert [(s.temperature, s.repeat_penalty) for s in tries] == [
        (TEXT_TEMPERATURE, TEXT_REPEAT_PENALTY)
    ] * 2
    assert [s.seed for s in tries] == [0, 1]  # each try another draw
    # A penalty the role's configuration sets is kept, and no other is added.
    model = ScriptedChatModel(answers)
    own = SamplingParams(temperature=0.0, frequency_penalty=0.4)
    await AssistantAgent(model, sampling=own, guidance="kind").step(
        messages, [], 0, Label(kind="text")
    )
    assert {(s.repeat_penalty, s.frequency_penalty) for _, _, s in model.calls} == {(1.0, 0.4)}


def test_grounded_value_is_not_glued_to_a_word():
    import re

    from tooldojo.agents.guidance import grounded_prose_constraint

    pattern = grounded_prose_constraint("4.5").json_schema["properties"]["answer"]["pattern"]
    assert re.fullmatch(pattern, "It is 4.5 degrees.") and re.fullmatch(pattern, "It is 4.5.")
    assert not re.fullmatch(pattern, "It is about4.5 degrees.")
    assert not re.fullmatch(pattern, "It is 4.55 degrees.")


def test_constrained_prose_leaves_numbers_to_the_quoted_value():
    import re

    from tooldojo.agents.guidance import grounded_prose_constraint

    pattern = grounded_prose_constraint("4.5").json_schema["properties"]["answer"]["pattern"]
    assert re.fullmatch(pattern, "In Oslo it is 4.5 degrees today.")
    # the number dumps the small model wrote in the free spans no longer fit the grammar
    assert not re.fullmatch(pattern, "2025-06-18T14:00:00Z; 12.3.2.2; 4.5 and 2025-06-18.")


def test_refusal_constraint_says_it_cannot_in_the_models_words():
    import re

    from tooldojo.agents.guidance import refuse_constraint

    pattern = refuse_constraint().json_schema["properties"]["answer"]["pattern"]
    assert re.fullmatch(pattern, "Sorry, I can't book flights: my tools only do math.")
    assert not re.fullmatch(pattern, "Bk_7f3a9c")  # the echo the small model wrote
    assert not re.fullmatch(pattern, "I cannot.")  # says nothing of what or why


@pytest.mark.anyio
async def test_a_refusal_retried_under_its_grammar_is_marked():
    from tooldojo.agents.assistant import AssistantAgent
    from tooldojo.model import Label, Message

    answers = ["Bk_7f3a9c", '{"answer": "Sorry, I cannot order pizza with these tools."}']
    agent = AssistantAgent(ScriptedChatModel(answers), guidance="kind")
    messages = [Message(role="user", content="Order me a pizza, please.")]
    completion = await agent.step(messages, [], seed=0, label=Label(kind="refuse"))
    assert completion.text == "Sorry, I cannot order pizza with these tools."
    assert completion.model.startswith("refuses(")
    assert agent.stats.as_dict() == {"refuses_text": 1, "own_text": 1}


def test_result_values_fall_back_to_what_the_gate_accepts():
    from tooldojo.agents.guidance import result_values
    from tooldojo.model import Message, ToolCall

    def answered(argument: float, result: str) -> list[Message]:
        call = ToolCall(id="c1", name="reciprocal", arguments={"x": argument})
        return [
            Message(role="user", content=f"What is the reciprocal of {argument}?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="c1", content=result),
        ]

    assert result_values(answered(4, "0.25")) == ["0.25"]
    assert result_values(answered(1, "1")) == ["1"]  # adds nothing new: any value grounds
    assert result_values(answered(0, "nan")) == ["nan"]  # not JSON: the text is the value


def test_every_synthesis_grammar_survives_the_llamacpp_pattern_filter():
    """The llama.cpp backend drops a pattern it cannot translate (alternation, look-arounds)
    and decodes that string freely: a grammar that silently vanished constrained nothing."""
    from tooldojo.agents.assistant import PROSE_CONSTRAINT
    from tooldojo.agents.guidance import (
        clarify_constraint,
        grounded_prose_constraint,
        refuse_constraint,
    )
    from tooldojo.agents.user import values_constraint
    from tooldojo.llm.llamacpp import _plain_pattern
    from tooldojo.model import Label

    constraints = [
        PROSE_CONSTRAINT,
        grounded_prose_constraint("0.272166"),
        clarify_constraint(Label(kind="clarify", missing=["start_date"])),
        refuse_constraint(),
        values_constraint(["cal_8d2e41", 3], question=True, topic="event"),
        values_constraint([], topic="recip"),
    ]
    for constraint in constraints:
        schema = constraint.json_schema
        pattern = next(iter(schema["properties"].values()))["pattern"]
        assert _plain_pattern(pattern) is not None, pattern


def test_a_yes_no_result_is_quoted_as_its_flag():
    from tooldojo.agents.guidance import result_values
    from tooldojo.model import Message, ToolCall

    call = ToolCall(id="c1", name="isinf", arguments={"z": 12.1})
    messages = [
        Message(role="user", content="Is 12.1 infinite?"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="c1", content="false"),
    ]
    assert result_values(messages) == ["false"]
