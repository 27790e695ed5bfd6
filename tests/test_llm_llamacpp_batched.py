"""Batched, prefix-cached decoding on the real SmolLM2 GGUF against llama-cpp-python's own
unbatched, uncached ``Llama`` path (slow: real decoding on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tooldojo.llm.base import Constraint
from tooldojo.llm.llamacpp import LlamaCppChatModel, call_schema, hermes_grammar
from tooldojo.llm.llamacpp_engine import GenerationParams, generate
from tooldojo.model import Message
from tooldojo.specs import load_tools

pytestmark = pytest.mark.slow

WEATHER_FILE = (
    Path(__file__).resolve().parent.parent / "examples" / "specs" / "weather_finance.openai.json"
)
QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write a haiku about rain.",
    "What is 12 times 12?",
    "Translate 'good morning' into Spanish.",
    "Who wrote Hamlet?",
    "Give me a synonym for happy.",
    "What is the boiling point of water in Celsius?",
    "List two programming languages.",
    "Say hello in German.",
    "What colour is the sky on a clear day?",
    "How many legs does a spider have?",
    "What is the largest planet?",
    "Describe a cat in five words.",
    "What is the opposite of cold?",
    "Name a fruit that is yellow.",
]
TOOL_QUESTIONS = [
    "What's the weather in Oslo right now?",
    "Convert 100 euros to dollars.",
    "Forecast for Lisbon for the next 3 days, in fahrenheit.",
    "Any severe weather alerts in Texas?",
]


def test_batched_greedy_matches_the_unbatched_path_and_reuses_the_prefix():
    from llama_cpp import Llama, LlamaGrammar

    model = LlamaCppChatModel(pool_size=1, n_threads=1, max_batch=8, n_ctx=4096)
    tools = load_tools([str(WEATHER_FILE)])[:4]
    grammar = hermes_grammar(json.dumps(call_schema(tools)), True, None)
    cases = [
        (model.render_prompt([Message(role="user", content=q)], None), None) for q in QUESTIONS
    ]
    cases += [
        (model.render_prompt([Message(role="user", content=q)], tools), grammar)
        for q in TOOL_QUESTIONS
    ]
    eos = model._eog_text
    reference = Llama(
        model_path=str(model.weights_path),
        n_ctx=4096,
        n_threads=1,
        n_threads_batch=1,
        flash_attn=True,  # as the engine: the comparison is of batching and the cache alone
        verbose=False,
    )
    expected = []
    for prompt, constraint in cases:
        reference.reset()  # no prefix kept from the previous prompt: the uncached path
        answer = reference.create_completion(
            prompt,
            max_tokens=24,
            temperature=0.0,
            stop=[eos],
            grammar=LlamaGrammar.from_string(constraint, verbose=False) if constraint else None,
        )
        expected.append(answer["choices"][0]["text"])

    async def batched() -> list[str]:
        engine = model._engines[0]
        out: dict[int, str] = {}

        async def one(index: int, prompt: str, constraint: str | None) -> None:
            params = GenerationParams(max_tokens=24, stop=[eos], grammar=constraint)
            out[index] = (await generate(engine, model.tokenize(prompt), params)).text

        async with anyio.create_task_group() as group:
            for index, (prompt, constraint) in enumerate(cases):
                group.start_soon(one, index, prompt, constraint)
        return [out[index] for index in range(len(cases))]

    got = anyio.run(batched)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    mismatches = [(a, b) for a, b in zip(got, expected, strict=True) if a != b]
    # The issue asks >= 95% (19 of these 20). A sequence decoded beside others can take a
    # near-tied token differently from the unbatched path (the batch shape changes the rounding
    # of llama.cpp's matrix products); a bug in routing, positions or batch order breaks most.
    print(f"batched = unbatched on {same}/{len(cases)}")
    assert same >= 0.95 * len(cases), mismatches
    stats = model.stats
    assert stats.decode_calls < stats.decoded_tokens  # several tokens per forward pass
    # The three later tool prompts share the first one's system prompt and tools block.
    tools_prefix = len(model.tokenize(cases[-1][0])) - 20
    assert stats.reused_tokens >= 3 * tools_prefix, stats
    assert 0 < model.hit_rate < 1


@pytest.mark.anyio
async def test_a_second_turn_reuses_the_first_and_constrained_calls_still_parse():
    model = LlamaCppChatModel(pool_size=2, n_threads=1, max_batch=4, n_ctx=4096)
    tools = load_tools([str(WEATHER_FILE)])
    messages = [Message(role="user", content="What's the weather in Oslo right now?")]
    first = await model.complete(messages, tools, constraint=Constraint(allow_text=False))
    assert first.ok and first.tool_calls, first.error
    before = model.stats
    messages += [
        first.as_message(),
        Message(
            role="tool",
            tool_call_id=first.tool_calls[0].id,
            content='{"temperature": 4, "unit": "celsius"}',
        ),
    ]
    second = await model.complete(messages, tools)
    assert second.ok
    reused = model.stats.reused_tokens - before.reused_tokens
    assert reused >= first.usage.prompt_tokens - 1  # the whole first prompt came from the cache


@pytest.mark.anyio
async def test_a_fresh_process_reads_the_tools_state_from_the_prefix_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path))
    tools = load_tools([str(WEATHER_FILE)])
    question = [Message(role="user", content="What's the weather in Oslo right now?")]
    first_model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=4096, prefix_store=True)
    first = await first_model.complete(question, tools, constraint=Constraint(allow_text=False))
    first_model.close()
    assert len(list(tmp_path.glob("kv/*/*.kv"))) == 1  # the system prompt's state, once
    second_model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=4096, prefix_store=True)
    second = await second_model.complete(question, tools, constraint=Constraint(allow_text=False))
    assert second_model.stats.stored_prefix_tokens > 500  # the tools block came from disk
    assert [(c.name, c.arguments) for c in second.tool_calls] == [
        (c.name, c.arguments) for c in first.tool_calls
    ]
    assert first.ok and second.ok
