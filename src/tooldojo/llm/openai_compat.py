"""Any OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, OpenAI) via the official SDK.

What this adds on top of ``openai.AsyncOpenAI``:

* several base URLs for one role, used round-robin (a retry moves on to the next one);
* a bound on requests in flight (thousands of concurrent episodes must not open thousands of
  sockets), spread over several small connection pools per URL (see :data:`POOL_SHARE`);
* our own retry loop with full-jitter exponential backoff on 429, 5xx, timeouts and connection
  errors (the SDK's built-in retries are switched off: their backoff is not jittered across
  clients, so many episodes retry in lock-step against an overloaded server);
* server-specific fields (``extra_body`` in the config) added to every request;
* the API key read from an environment variable named in the config; it is handed to the SDK and
  never printed (``repr`` shows the variable's name only);
* answers mapped to a :class:`~tooldojo.llm.base.Completion`: native ``tool_calls``, or for a
  ``tool_calls`` constraint either ``tool_choice="required"`` (any endpoint) or a
  ``response_format`` JSON Schema built from the tools (vLLM/SGLang guided decoding).

A request that still fails after the retries, or an answer with malformed arguments or an
unknown tool, comes back as a failed completion (``error`` set), never as an exception.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
import time
from importlib.util import find_spec
from typing import Any, Literal

import anyio
import openai
from openai import AsyncOpenAI

from tooldojo.errors import ToolDojoError
from tooldojo.llm._shared import (
    base_fields,
    completion_from_document,
    completion_from_text,
    failed,
    render_chat,
    tool_calls_document_schema,
    with_calls,
)
from tooldojo.llm.base import Completion, Constraint, SamplingParams
from tooldojo.llm.codecs import get_codec
from tooldojo.model import Message, Tool, ToolCall

ConstrainWith = Literal["tool_choice", "response_format"]

_RETRYABLE = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError)

POOL_SHARE = 32
"""Requests in flight per HTTP client. httpcore's pool rescans all of its connections (a
``poll`` syscall for each idle one) whenever a request starts or ends, so one pool of 256
connections spends milliseconds of CPU per request; pools of 32 keep that scan short."""


def _http_client(timeout_s: float) -> Any:
    """The SDK's own HTTP client, sized for :data:`POOL_SHARE` connections.

    aiohttp, the transport the SDK recommends for high concurrency (``openai[aiohttp]``),
    when it is installed: it costs about 30% less CPU per request than the default httpx
    one (``bench/synth_throughput.py``: 1.6 against 2.3 ms per model call at 256 in flight).
    The ``Limits`` class is taken from the SDK's defaults, so this works whichever httpx
    flavour the installed SDK is built on.
    """
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=2 * POOL_SHARE, max_keepalive_connections=2 * POOL_SHARE
    )
    if find_spec("aiohttp") is not None and hasattr(openai, "DefaultAioHttpClient"):
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s)


def _retryable(error: Exception) -> bool:
    if isinstance(error, _RETRYABLE):
        return True
    return isinstance(error, openai.APIStatusError) and error.status_code >= 500


class OpenAIChatModel:
    """One model behind one or more OpenAI-compatible base URLs."""

    def __init__(
        self,
        model: str,
        base_urls: list[str],
        *,
        api_key_env: str | None = None,
        max_in_flight: int = 64,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        constrain_with: ConstrainWith = "tool_choice",
        text_codec: str | None = "hermes",
        name: str | None = None,
        extra_body: dict[str, Any] | None = None,
    ):
        if not base_urls:
            raise ToolDojoError(f"openai backend for {model!r}: no base URL given")
        for url in base_urls:
            if not url.startswith(("http://", "https://")):
                raise ToolDojoError(f"openai backend: base URL {url!r} must start with http(s)://")
        if max_in_flight < 1 or max_retries < 0 or timeout_s <= 0:
            raise ToolDojoError("openai backend: max_in_flight >= 1, max_retries >= 0, timeout > 0")
        api_key = "EMPTY"  # local servers (vLLM, SGLang, llama.cpp) accept any key
        if api_key_env:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise ToolDojoError(
                    f"openai backend: environment variable {api_key_env} (the API key) is not set"
                )
        self.model = model
        self.name = name or model
        self.base_urls = list(base_urls)
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.constrain_with: ConstrainWith = constrain_with
        self.text_codec = get_codec(text_codec) if text_codec else None
        self.extra_body = dict(extra_body or {})
        self._api_key = api_key
        self._pools_per_url = max(1, math.ceil(max_in_flight / (POOL_SHARE * len(base_urls))))
        self._clients: list[AsyncOpenAI] = []
        self._clients_loop: object = None
        self._next_client = itertools.count()
        self._max_in_flight = max_in_flight
        self._in_flight: anyio.Semaphore | None = None

    def __repr__(self) -> str:
        key = f"${self.api_key_env}" if self.api_key_env else "none"
        return f"OpenAIChatModel(model={self.model!r}, base_urls={self.base_urls!r}, api_key={key})"

    def _request(
        self,
        messages: list[Message],
        tools: list[Tool] | None,
        sampling: SamplingParams,
        constraint: Constraint | None,
    ) -> tuple[dict[str, Any], bool]:
        """Arguments for ``chat.completions.create``, and whether the answer is a JSON document."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        if sampling.stop:
            request["stop"] = sampling.stop
        for penalty in ("frequency_penalty", "presence_penalty"):  # OpenAI's own fields
            if getattr(sampling, penalty):
                request[penalty] = getattr(sampling, penalty)
        request.update(self.extra_body)
        if tools:
            request["tools"] = [tool.to_openai() for tool in tools]
        is_document = False
        if constraint is not None and constraint.kind == "json":
            request["response_format"] = {"type": "json_object"}
        elif constraint is not None and constraint.kind == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": constraint.json_schema or {}},
            }
        elif constraint is not None and tools:
            if self.constrain_with == "response_format":
                schema = tool_calls_document_schema(
                    tools, allow_text=constraint.allow_text, max_calls=constraint.max_calls
                )
                request["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "tool_calls_or_answer", "schema": schema},
                }
                request.pop("tools")  # the schema replaces them; the tools go into the prompt
                is_document = True
            else:
                if not constraint.allow_text:
                    request["tool_choice"] = "required"
                if constraint.max_calls == 1:
                    request["parallel_tool_calls"] = False
        return request, is_document

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion:
        sampling = sampling or SamplingParams()
        request, is_document = self._request(messages, tools, sampling, constraint)
        if is_document and tools:
            # The tools no longer travel natively, so the model must read them in the prompt.
            request["messages"] = render_chat(messages, tools, get_codec("json"))
        self._client_pool()
        assert self._in_flight is not None
        started = time.perf_counter()
        async with self._in_flight:
            response, error = await self._create_with_retries(request)
        latency = time.perf_counter() - started
        if response is None:
            base = base_fields(
                model=self.name,
                finish_reason="error",
                prompt_tokens=0,
                completion_tokens=0,
                latency_s=latency,
            )
            return failed("", error, base)
        return self._completion(response, tools, is_document, latency)

    def _client_pool(self) -> list[AsyncOpenAI]:
        """The HTTP clients of the running event loop, built on first use in each loop.

        The SDK's clients (aiohttp sessions, httpx connection pools) belong to the event loop
        that opened them, and the loop and other stages call one model from several
        ``anyio.run`` in turn. The clients are interleaved by URL, so round-robin alternates
        between the URLs.
        """
        loop = asyncio.get_running_loop()
        if self._clients_loop is not loop:
            self._clients = [
                AsyncOpenAI(
                    base_url=url,
                    api_key=self._api_key,
                    max_retries=0,
                    timeout=self.timeout_s,
                    http_client=_http_client(self.timeout_s),
                )
                for _ in range(self._pools_per_url)
                for url in self.base_urls
            ]
            self._clients_loop = loop
            self._in_flight = anyio.Semaphore(self._max_in_flight)
        return self._clients

    async def _create_with_retries(self, request: dict[str, Any]) -> tuple[Any, str]:
        """(response, "") or (None, why it failed) after up to ``max_retries`` retries."""
        last = ""
        for attempt in range(self.max_retries + 1):
            client = self._clients[next(self._next_client) % len(self._clients)]
            try:
                return await _create(client, request), ""
            except openai.APIError as error:
                last = f"{type(error).__name__} from {client.base_url}: {_short(error)}"
                if not _retryable(error) or attempt == self.max_retries:
                    break
            # Full jitter (AWS architecture blog): spreads many clients' retries apart.
            ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
            await anyio.sleep(random.uniform(0, ceiling))
        attempts = "1 attempt" if self.max_retries == 0 else f"{self.max_retries + 1} attempts"
        return None, f"request failed after {attempts}: {last}"

    def _completion(
        self, response: Any, tools: list[Tool] | None, is_document: bool, latency: float
    ) -> Completion:
        choice = response.choices[0]
        usage = response.usage
        base = base_fields(
            model=self.name,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            latency_s=latency,
        )
        message = choice.message
        text = message.content or ""
        if is_document:
            return completion_from_document(text, tools, base=base)
        if message.tool_calls:
            calls = []
            for raw in message.tool_calls:
                try:
                    calls.append(ToolCall.from_openai(raw.model_dump()))
                except (ValueError, json.JSONDecodeError) as error:
                    shown = json.dumps([c.model_dump() for c in message.tool_calls])
                    return failed(shown, f"malformed tool call arguments ({error})", base)
            return with_calls(text, calls, tools, base)
        if tools and self.text_codec is not None:
            # Servers without a tool parser hand back the raw <tool_call> text: read it ourselves.
            return completion_from_text(text, tools, self.text_codec, base=base)
        return Completion(text=text, **base)

    async def aclose(self) -> None:
        """Close the HTTP connections (on the event loop that used them); a later request
        opens new ones."""
        clients, self._clients, self._clients_loop = self._clients, [], None
        for client in clients:
            await client.close()

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _create(client: AsyncOpenAI, request: dict[str, Any]) -> Any:
    """``chat.completions.create`` with the request body sent as it is.

    ``create`` walks every argument through the SDK's recursive TypedDict transform, about a
    millisecond of CPU per request once tool schemas are attached. Our request is already the
    wire JSON, so all of it but the model travels as ``extra_body``, which the SDK merges into
    the body untouched (it replaces the empty ``messages`` given for the signature's sake).
    """
    body = dict(request)
    model = body.pop("model")
    return await client.chat.completions.create(model=model, messages=[], extra_body=body)


def _short(error: Exception) -> str:
    """The SDK's message plus the transport's own reason, which the SDK's message hides: its
    aiohttp transport reports a refused connection as ``Request timed out.``"""
    text = str(error)
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    if root is not error and str(root) and str(root) not in text:
        text = f"{text} ({type(root).__name__}: {root})"
    text = text.replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."
