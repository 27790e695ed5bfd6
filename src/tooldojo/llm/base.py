"""The one small protocol every agent uses to talk to a model.

User simulator, assistant, server simulator and judge all call
``await model.complete(messages, tools, sampling=..., constraint=...)``; which
backend answers (embedded llama.cpp, an OpenAI-compatible endpoint, a
transformers checkpoint, or a scripted fake in unit tests) is configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tooldojo.model import Message, Tool, ToolCall

T = TypeVar("T")


class SamplingParams(BaseModel):
    """Decoding settings; ``temperature=0`` means greedy."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] | None = None
    repeat_penalty: float = Field(default=1.0, gt=0)
    """Divides the logits of tokens generated lately (llama.cpp's ``repeat_penalty``; 1.0:
    none). The embedded backend only: an OpenAI-compatible server takes its own spelling
    through ``extra_body``; the transformers backend ignores all three penalties."""
    frequency_penalty: float = 0.0
    """Lowers a token's logit by this much per time it was generated (OpenAI's meaning;
    embedded and OpenAI-compatible backends)."""
    presence_penalty: float = 0.0
    """Lowers the logit of every token generated at least once (OpenAI's meaning; embedded and
    OpenAI-compatible backends)."""


class Constraint(BaseModel):
    """What the output must look like, enforced by the backend when it can.

    ``tool_calls``: a text answer or a list of calls, each matching one of the
    offered tools' schemas (built from the tools by the backend);
    ``json_schema``: a JSON document matching ``schema``;
    ``json``: any JSON object.
    """

    kind: Literal["tool_calls", "json_schema", "json"] = "tool_calls"
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    allow_text: bool = True
    """For ``tool_calls``: whether a plain text answer is also allowed."""
    max_calls: int | None = Field(default=None, ge=1)
    """For ``tool_calls``: at most this many calls in one answer (``None``: no limit)."""

    model_config = ConfigDict(populate_by_name=True)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Completion(BaseModel):
    """One model answer: text, parsed tool calls and bookkeeping.

    A model that answers badly (malformed call, unknown tool, endpoint gave up after retries)
    does not raise: the completion comes back with ``finish_reason="error"``, ``error`` saying
    what went wrong, no ``tool_calls`` and the raw output in ``text``, so one bad answer is a
    data point of a run rather than the end of it.
    """

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str = "stop"
    """``stop``, ``length`` (hit ``max_tokens``), ``tool_calls`` or ``error``."""
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    model: str = ""
    error: str | None = None
    """Why this completion failed (``finish_reason == "error"``); ``None`` when it did not."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_message(self) -> Message:
        """The assistant message this completion stands for."""
        return Message(
            role="assistant",
            content=self.text or None,
            tool_calls=list(self.tool_calls) or None,
        )


@runtime_checkable
class ChatModel(Protocol):
    """Async chat completion; implementations must be safe to cancel mid-call."""

    name: str

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion: ...


async def aclose_models(models: Iterable[object]) -> None:
    """Close the HTTP connections of ``models`` (local backends have no ``aclose``).

    A remote model's connections belong to the event loop that opened them, so a command
    that calls ``anyio.run`` closes them before that loop ends.
    """
    for model in {id(m): m for m in models}.values():
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()


async def run_then_close(work: Callable[[], Awaitable[T]], models: Iterable[object]) -> T:
    """Await ``work()``, then :func:`aclose_models` on the same event loop."""
    try:
        return await work()
    finally:
        await aclose_models(models)
