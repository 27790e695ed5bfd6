"""The ``openai`` backend against a real HTTP server on 127.0.0.1 (starlette + uvicorn).

The server is scripted per request by the model name, so each test can make it fail with 429 or
500 a given number of times, stall past the client's timeout, or answer with tool calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server_support import free_port, serve_in_thread
from tooldojo.errors import ToolDojoError
from tooldojo.llm.base import Constraint, SamplingParams, run_then_close
from tooldojo.llm.openai_compat import POOL_SHARE, OpenAIChatModel
from tooldojo.model import Message, Tool

WEATHER = Tool(
    name="get_current_weather",
    description="Weather now",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
)
ASK = [Message(role="user", content="Weather in Paris?")]


class ScriptedServer:
    """An OpenAI-compatible chat endpoint whose behaviour is chosen by the request's model."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.failures: dict[str, int] = {}
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model: str = body["model"]
        behaviour, _, times = model.partition("x")
        count = self.failures.get(model, 0)
        if behaviour in {"429", "500"} and count < int(times or 10**9):
            self.failures[model] = count + 1
            return JSONResponse({"error": {"message": "try later"}}, status_code=int(behaviour))
        if behaviour == "slow" and count < int(times or 10**9):
            self.failures[model] = count + 1
            await asyncio.sleep(3)
        if behaviour == "badargs":
            return self._answer(model, tool_calls=[("c1", "get_current_weather", "{not json")])
        if behaviour == "unknown":
            return self._answer(model, tool_calls=[("c1", "launch_rocket", "{}")])
        if behaviour == "document":
            content = json.dumps(
                {"tool_calls": [{"name": "get_current_weather", "arguments": {"location": "X"}}]}
            )
            return self._answer(model, content=content)
        if behaviour == "hermes":
            content = '<tool_call>\n{"name": "get_current_weather", "arguments": {}}\n</tool_call>'
            return self._answer(model, content=content)
        if body.get("tools"):
            arguments = json.dumps({"location": "Paris"})
            return self._answer(model, tool_calls=[("c1", "get_current_weather", arguments)])
        return self._answer(model, content="sunny")

    @staticmethod
    def _answer(model: str, content: str | None = None, tool_calls=None) -> JSONResponse:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = [
                {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
                for id_, name, args in tool_calls
            ]
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if tool_calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
        )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ScriptedServer, str]]:
    scripted = ScriptedServer()
    with serve_in_thread(scripted.app) as url:
        yield scripted, url


def _model(url: str, model: str, **kwargs: Any) -> OpenAIChatModel:
    kwargs.setdefault("backoff_base_s", 0.01)
    kwargs.setdefault("backoff_max_s", 0.05)
    return OpenAIChatModel(model, [url], **kwargs)


async def _ask(model: OpenAIChatModel, *args: Any, **kwargs: Any):
    """One request, closing the client on this event loop (each test has its own loop)."""
    async with model:
        return await model.complete(*args, **kwargs)


@pytest.mark.anyio
async def test_native_tool_calls_and_usage(server):
    scripted, url = server
    completion = await _ask(_model(url, "ok"), ASK, [WEATHER])
    assert completion.ok and completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [
        ("c1", "get_current_weather", {"location": "Paris"})
    ]
    assert completion.usage.prompt_tokens == 7 and completion.usage.completion_tokens == 3
    assert scripted.requests[-1]["tools"] == [WEATHER.to_openai()]
    text = await _ask(_model(url, "ok"), ASK, sampling=SamplingParams(temperature=0.7))
    assert text.text == "sunny" and text.tool_calls == [] and text.ok
    assert scripted.requests[-1]["temperature"] == 0.7


@pytest.mark.anyio
@pytest.mark.parametrize("status", ["429", "500"])
async def test_retries_on_429_and_500_then_succeeds(server, status: str):
    scripted, url = server
    model_name = f"{status}x2"
    before = len(scripted.requests)
    completion = await _ask(_model(url, model_name, max_retries=3), ASK, [WEATHER])
    assert completion.ok, completion.error
    assert completion.tool_calls[0].name == "get_current_weather"
    assert len(scripted.requests) - before == 3  # two failures, one success


@pytest.mark.anyio
async def test_gives_up_after_retries_with_a_typed_failure(server):
    scripted, url = server
    before = len(scripted.requests)
    completion = await _ask(_model(url, "500", max_retries=2), ASK, [WEATHER])
    assert not completion.ok and completion.finish_reason == "error"
    assert "after 3 attempts" in completion.error and "InternalServerError" in completion.error
    assert len(scripted.requests) - before == 3


@pytest.mark.anyio
async def test_timeout_is_retried_and_then_reported(server):
    _scripted, url = server
    started = time.perf_counter()
    completion = await _ask(_model(url, "slowx1", timeout_s=0.5, max_retries=2), ASK, [WEATHER])
    assert completion.ok, completion.error  # the first request timed out, the retry succeeded
    assert time.perf_counter() - started < 2.5
    never = await _ask(_model(url, "slow", timeout_s=0.3, max_retries=1), ASK)
    assert not never.ok and "APITimeoutError" in never.error


@pytest.mark.anyio
async def test_unreachable_endpoint_is_a_typed_failure():
    url = f"http://127.0.0.1:{free_port()}/v1"
    completion = await _ask(_model(url, "ok", max_retries=1, timeout_s=2), ASK)
    assert not completion.ok
    # httpx reports it as a connection error; the aiohttp transport as a timeout whose cause
    # says what happened: either way the reason reaches the message.
    assert "APIConnectionError" in completion.error or "ConnectionRefused" in completion.error


@pytest.mark.anyio
async def test_bad_model_output_becomes_typed_failures(server):
    _, url = server
    bad = await _ask(_model(url, "badargs"), ASK, [WEATHER])
    assert not bad.ok and "malformed tool call arguments" in bad.error
    unknown = await _ask(_model(url, "unknown"), ASK, [WEATHER])
    assert not unknown.ok and "unknown tool 'launch_rocket'" in unknown.error
    assert unknown.tool_calls == []
    hermes = await _ask(_model(url, "hermes"), ASK, [WEATHER])
    assert hermes.ok and hermes.tool_calls[0].name == "get_current_weather"


@pytest.mark.anyio
async def test_constraints_reach_the_server(server):
    scripted, url = server
    forced = _model(url, "ok")
    await _ask(forced, ASK, [WEATHER], constraint=Constraint(allow_text=False, max_calls=1))
    assert scripted.requests[-1]["tool_choice"] == "required"
    assert scripted.requests[-1]["parallel_tool_calls"] is False
    guided = _model(url, "document", constrain_with="response_format")
    completion = await _ask(guided, ASK, [WEATHER], constraint=Constraint())
    sent = scripted.requests[-1]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert sent["response_format"]["type"] == "json_schema" and "tools" not in sent
    call = schema["anyOf"][0]["properties"]["tool_calls"]["items"]
    assert call["properties"]["arguments"] == WEATHER.parameters
    assert "get_current_weather" in sent["messages"][0]["content"]  # tools moved to the prompt
    assert completion.ok and completion.tool_calls[0].arguments == {"location": "X"}


@pytest.mark.anyio
async def test_request_body_is_sent_as_built_with_server_specific_fields(server):
    scripted, url = server
    model = _model(url, "ok", extra_body={"repeat_penalty": 1.0, "top_k": 1})
    sampling = SamplingParams(temperature=0.0, max_tokens=7, seed=3)
    await _ask(model, ASK, [WEATHER], sampling=sampling)
    sent = scripted.requests[-1]
    assert sent["repeat_penalty"] == 1.0 and sent["top_k"] == 1
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 7 and sent["seed"] == 3
    assert sent["messages"] == [message.to_openai() for message in ASK]
    assert sent["tools"] == [WEATHER.to_openai()]


@pytest.mark.anyio
async def test_many_in_flight_requests_are_spread_over_small_connection_pools():
    async with OpenAIChatModel("m", ["http://a/v1", "http://b/v1"], max_in_flight=256) as model:
        clients = model._client_pool()
        assert len(clients) == 256 // POOL_SHARE and model._client_pool() is clients
        hosts = [str(client.base_url) for client in clients[:4]]
        assert hosts == ["http://a/v1/", "http://b/v1/", "http://a/v1/", "http://b/v1/"]
    async with OpenAIChatModel("m", ["http://a/v1"], max_in_flight=4) as small:
        assert len(small._client_pool()) == 1


def test_one_model_serves_several_event_loops_in_turn(server):
    """The loop calls one model from one ``anyio.run`` per stage, closing it at the end."""
    _scripted, url = server
    model = _model(url, "ok")
    for _ in range(2):
        answer = anyio.run(run_then_close, lambda: model.complete(ASK), [model])
        assert answer.text == "sunny" and model._clients == []


@pytest.mark.anyio
async def test_load_balances_base_urls_and_sends_the_key(server, monkeypatch):
    scripted, url = server
    monkeypatch.setenv("TOOLDOJO_TEST_KEY", "sk-secret-123")
    other = url.replace("127.0.0.1", "localhost")
    model = OpenAIChatModel("ok", [url, other], api_key_env="TOOLDOJO_TEST_KEY")
    assert "sk-secret-123" not in repr(model) and "TOOLDOJO_TEST_KEY" in repr(model)
    before = len(scripted.headers)
    async with model:
        for _ in range(4):
            await model.complete(ASK)
    hosts = [headers["host"].split(":")[0] for headers in scripted.headers[before:]]
    assert sorted(hosts) == ["127.0.0.1", "127.0.0.1", "localhost", "localhost"]
    assert all(h["authorization"] == "Bearer sk-secret-123" for h in scripted.headers[before:])


@pytest.mark.anyio
async def test_in_flight_requests_are_bounded(server):
    _scripted, url = server
    model = _model(url, "ok", max_in_flight=3)
    peak = 0
    original = model._create_with_retries
    active = 0

    async def counting(request):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await original(request)
        finally:
            active -= 1

    model._create_with_retries = counting  # type: ignore[method-assign]
    async with model:
        results = await asyncio.gather(*(model.complete(ASK) for _ in range(12)))
    assert all(r.ok for r in results) and peak == 3


def test_configuration_errors_are_clear(monkeypatch):
    monkeypatch.delenv("TOOLDOJO_MISSING_KEY", raising=False)
    with pytest.raises(ToolDojoError, match="TOOLDOJO_MISSING_KEY"):
        OpenAIChatModel("m", ["http://127.0.0.1:1/v1"], api_key_env="TOOLDOJO_MISSING_KEY")
    with pytest.raises(ToolDojoError, match="must start with http"):
        OpenAIChatModel("m", ["127.0.0.1:8000"])
    with pytest.raises(ToolDojoError, match="no base URL"):
        OpenAIChatModel("m", [])
