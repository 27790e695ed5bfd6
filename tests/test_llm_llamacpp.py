"""The embedded backend on the real SmolLM2-135M-Instruct GGUF (slow: real decoding on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import jsonschema
import pytest

from tooldojo.llm.base import Constraint, SamplingParams
from tooldojo.llm.llamacpp import LlamaCppChatModel, grammar_friendly
from tooldojo.model import Message, Tool

pytestmark = pytest.mark.slow

SPECS = Path(__file__).resolve().parent.parent / "examples" / "specs"
WEATHER_FILE = SPECS / "weather_finance.openai.json"


@pytest.fixture(scope="module")
def model() -> LlamaCppChatModel:
    # The 4-bit file these thresholds were measured on: the 135M model's judgement shifts a
    # little with the weights' rounding (the example-tools check gave 30/38 on it, 28/38 on the
    # f16 default, both typed failures at max_tokens; docs/llm.md). Guessed tokens off for the
    # same reason: a pass of several tokens rounds differently (28/38 with them, 3 answers
    # parting on near-tied digits).
    return LlamaCppChatModel(pool_size=2, n_ctx=2048, weights="file", draft_tokens=0)


def _example_tools() -> list[Tool]:
    from tooldojo.specs import load_tools

    return load_tools(sorted(str(path) for path in SPECS.iterdir() if path.is_file()))


@pytest.fixture(scope="module")
def unbatched() -> LlamaCppChatModel:
    """The fixture's model with each request decoded alone from a fresh prompt: with sequences
    batched (and prefixes reused), which requests share a pass depends on timing, and the
    4-bit kernels round a batch differently from a single sequence, so the count below could
    move with the machine's load."""
    return LlamaCppChatModel(
        pool_size=2, n_ctx=2048, weights="file", draft_tokens=0, max_batch=1, reuse_prefixes=False
    )


@pytest.mark.anyio
async def test_every_example_tool_gets_a_schema_valid_call_under_constraint(unbatched):
    model = unbatched
    tools = _example_tools()
    assert len(tools) >= 20
    forced = Constraint(allow_text=False, max_calls=1)
    sampling = SamplingParams(max_tokens=256)

    async def ask(tool: Tool):
        summary = tool.description.split(". ")[0] or tool.name
        request = [Message(role="user", content=f"Please {summary[0].lower()}{summary[1:]}.")]
        return tool, await model.complete(request, [tool], sampling=sampling, constraint=forced)

    results = []
    async with anyio.create_task_group() as group:
        for tool in tools:
            group.start_soon(lambda t=tool: _collect(results, ask(t)))
    assert len(results) == len(tools)
    failures = []
    for tool, completion in results:
        if not completion.ok:
            # A typed failure: the answer ran past max_tokens, or broke a part of the schema the
            # grammar cannot express (patterns, float bounds) and was caught by the check after.
            failures.append((tool.name, completion.error))
            continue
        (call,) = completion.tool_calls
        assert call.name == tool.name
        jsonschema.validate(call.arguments, tool.parameters)  # the FULL schema
    print(f"{len(tools) - len(failures)}/{len(tools)} schema-valid calls; failures: {failures}")
    # Measured decoded alone (so the same on every run): 28/38 schema-valid with llama.cpp
    # 0.3.36 (29/38 on its AMX kernels, 28 Nov); 30/38 was read batched on an idle machine.
    assert len(failures) <= 10, failures


def _idle(model: LlamaCppChatModel) -> bool:
    return all(not engine._active and not engine._pending for engine in model._engines)


async def _collect(results: list, awaitable) -> None:
    results.append(await awaitable)


@pytest.mark.anyio
async def test_text_or_call_and_plain_generation(model):
    weather = [t for t in _example_tools() if t.name == "get_current_weather"]
    answer = await model.complete(
        [Message(role="user", content="What is the capital of France? One word.")],
        sampling=SamplingParams(max_tokens=8),
    )
    assert answer.ok and "Paris" in answer.text and answer.usage.completion_tokens <= 8
    either = await model.complete(
        [Message(role="user", content="Weather in Oslo?")],
        weather,
        sampling=SamplingParams(max_tokens=128),
        constraint=Constraint(),
    )
    # Under the constraint the answer is a schema-valid call of the offered tool, or plain
    # text (SmolLM2 chooses text here); with 128 tokens a cut-off call is no excuse.
    assert either.ok, either.error
    if either.tool_calls:
        for call in either.tool_calls:
            assert call.name == "get_current_weather"
            jsonschema.validate(call.arguments, weather[0].parameters)
    else:
        assert either.text.strip() and "<tool_call>" not in either.text


@pytest.mark.anyio
async def test_a_prompt_longer_than_the_context_is_a_failed_completion(model):
    """What failed synthesis episodes before n_ctx defaulted to SmolLM2's 8192."""
    long = " ".join(["calendar"] * 2200)  # > 2048 tokens
    answer = await model.complete(
        [Message(role="user", content=long)], sampling=SamplingParams(max_tokens=4)
    )
    assert not answer.ok and "context window" in answer.error and "n_ctx=2048" in answer.error
    assert _idle(model)  # nothing was admitted to an engine


@pytest.mark.anyio
async def test_cancellation_returns_the_instance_to_the_pool(model):
    started = time.perf_counter()
    with anyio.move_on_after(0.3):
        await model.complete(
            [Message(role="user", content="Write a very long story about a dragon.")],
            sampling=SamplingParams(max_tokens=400),
        )
    assert time.perf_counter() - started < 2.0
    # The engine drops the cancelled sequence at its next step; under CPU load one step (a
    # prompt chunk) can take seconds, so the guard is generous: only never-idle fails.
    for _ in range(1200):
        if _idle(model):
            break
        await anyio.sleep(0.05)
    assert _idle(model)
    again = await model.complete(
        [Message(role="user", content="Say hi.")], sampling=SamplingParams(max_tokens=4)
    )
    assert again.ok and again.usage.completion_tokens >= 1


def test_tooldojo_call_weather_acceptance():
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tooldojo.cli",
            "call",
            "--specs",
            str(WEATHER_FILE),
            "What's the weather in Paris in celsius?",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        # PYTHONPATH kept: a worktree's sources win over the editable install (as in pytest).
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        | {key: os.environ[key] for key in ("PYTHONPATH", "HOME") if key in os.environ},
    )
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)
    assert len(calls) >= 1
    tools = {t["function"]["name"]: t["function"] for t in json.loads(WEATHER_FILE.read_text())}
    for call in calls:
        schema = grammar_friendly(tools[call["name"]]["parameters"])
        jsonschema.validate(call["arguments"], schema)
    print(f"tooldojo call took {time.perf_counter() - started:.1f} s: {calls}")
