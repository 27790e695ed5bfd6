"""The llama.cpp backend stops an answer that made its calls and then wrote something else.

``end_of_calls`` is pure string logic (milliseconds); the last test runs the real engine with an
``end_of_answer`` hook to show that a cut answer stops decoding and keeps only the text before
the cut.
"""

from __future__ import annotations

import pytest

from tooldojo.llm.codecs import HermesCodec
from tooldojo.llm.llamacpp import end_of_calls

CODEC = HermesCodec()
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'


def test_prose_after_a_call_ends_the_answer_at_the_close_tag():
    text = CALL + "\nThe weather in Oslo is"
    assert end_of_calls(CODEC, text) == len(CALL)
    assert [c.name for c in CODEC.parse(text[: len(CALL)])] == ["get_weather"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The weather in Oslo is sunny.",  # no call at all: a text answer runs to its end
        CALL,  # the end-of-turn token or another block may follow
        CALL + "\n",
        CALL + "\n<tool",  # a second block is starting
        CALL + "\n<tool_call>\n{",  # parallel calls go on
        CALL + "\n" + CALL,
        '<tool_call>\n{"name": "note", "arguments": {"text": "a </tool_call> b',  # inside a string
        "Here is some text </tool_call> and more",  # a close tag without a call before it
    ],
)
def test_answers_that_may_still_be_calling_go_on(text):
    assert end_of_calls(CODEC, text) is None


def test_the_second_of_parallel_calls_ends_the_answer_when_prose_follows():
    text = CALL + "\n" + CALL + "\n\nDone"
    assert end_of_calls(CODEC, text) == len(CALL) * 2 + 1


@pytest.mark.anyio
async def test_the_engine_stops_where_end_of_answer_cuts():
    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.llm.llamacpp_engine import GenerationParams, generate
    from tooldojo.model import Message

    model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=512)
    try:
        prompt = model.render_prompt(
            [Message(role="user", content="Write a long story about a lighthouse.")], None
        )
        tokens = model.tokenize(prompt)
        free = await generate(model._engines[0], tokens, GenerationParams(max_tokens=40))
        assert len(free.text) > 20 and free.finish_reason == "length"

        def cut_after_ten(text: str) -> int | None:
            return 10 if len(text) > 12 else None

        params = GenerationParams(max_tokens=40, end_of_answer=cut_after_ten)
        stopped = await generate(model._engines[0], tokens, params)
        assert stopped.text == free.text[:10] and stopped.finish_reason == "stop"
        assert stopped.completion_tokens < free.completion_tokens
        assert model.stats.answer_end_stops == 1
    finally:
        model.close()


@pytest.mark.anyio
async def test_guessed_tokens_are_confirmed_and_the_greedy_answer_is_unchanged():
    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.llm.llamacpp_engine import GenerationParams, generate
    from tooldojo.model import Message

    text = "The quick brown fox jumps over the lazy dog near the old river bank."
    question = [Message(role="user", content=f"Repeat exactly, twice: {text}")]
    answers, stats = [], []
    for draft_tokens in (0, 4):
        model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=512, draft_tokens=draft_tokens)
        try:
            tokens = model.tokenize(model.render_prompt(question, None))
            result = await generate(model._engines[0], tokens, GenerationParams(max_tokens=48))
            answers.append(result.text)
            stats.append(model.stats)
        finally:
            model.close()
    plain, guessed = stats
    assert plain.draft_tokens == 0
    assert guessed.accepted_draft_tokens >= 4  # the copied sentence came in fewer passes
    assert guessed.decode_calls < plain.decode_calls
    assert answers[1] == answers[0]


@pytest.mark.anyio
async def test_an_answer_caught_in_a_loop_is_cut_before_max_tokens():
    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.llm.llamacpp_engine import LOOP_TOKENS, GenerationParams, generate
    from tooldojo.model import Message

    model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=1024)
    try:
        prompt = model.render_prompt([Message(role="user", content="Sing la la la.")], None)
        params = GenerationParams(max_tokens=400, grammar='root ::= ("la ")+')
        result = await generate(model._engines[0], model.tokenize(prompt), params)
        assert result.finish_reason == "length"
        assert LOOP_TOKENS <= result.completion_tokens < LOOP_TOKENS + 8
        assert model.stats.loop_stops == 1 and model.stats.length_stops == 0
    finally:
        model.close()


@pytest.mark.anyio
async def test_prompt_threads_read_the_prompt_and_leave_the_answer_unchanged():
    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.llm.llamacpp_engine import GenerationParams, generate
    from tooldojo.model import Message

    question = [Message(role="user", content="Name three rivers in Europe. " * 12)]
    answers = []
    for prompt_threads in (None, 2):
        model = LlamaCppChatModel(
            pool_size=1, max_batch=1, n_ctx=512, n_threads_batch=prompt_threads
        )
        try:
            tokens = model.tokenize(model.render_prompt(question, None))
            assert len(tokens) >= 64  # long enough for the prompt threads
            result = await generate(model._engines[0], tokens, GenerationParams(max_tokens=12))
            answers.append(result.text)
            assert model._engines[0]._prompt_threads == (prompt_threads or 1)
        finally:
            model.close()
    assert answers[0] == answers[1] and answers[0]
