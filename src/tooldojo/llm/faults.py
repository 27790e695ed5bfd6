"""Fault injection: a backend wrapper that fails, times out or talks garbage on a seeded share.

Real backends fail in three ways: they raise (a connection reset, a crashed server), they
hang until a timeout, and they answer with junk (a cut-off or mangled completion). A run must
survive all three: retry what is worth retrying, count what failed, never write half a record
and never dress a failure up as data. :class:`FaultyChatModel` makes those failures happen on
purpose, on a seeded ``rate`` of calls, so tests and soak runs can check that.

Configured per backend in ``tooldojo.yaml``::

    backends:
      local: {kind: llamacpp, faults: {rate: 0.1, seed: 0}}

The draw is a seeded stream over the wrapper's calls, so a run with the same call order
injects the same faults; under concurrency the order (and so which call gets which fault) may
vary, the rate does not.
"""

from __future__ import annotations

import random
import string
import threading
from collections import Counter
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from tooldojo.llm.base import ChatModel, Completion, Constraint, SamplingParams
from tooldojo.model import Message, Tool

FaultKind = Literal["error", "exception", "timeout", "garbage"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "exception", "timeout", "garbage")


class FaultConfig(BaseModel):
    """How often and how a wrapped backend misbehaves."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of calls that get a fault."""
    seed: int = 0
    kinds: list[FaultKind] = Field(default_factory=lambda: list(FAULT_KINDS), min_length=1)
    """Which faults to draw from, uniformly: ``error`` (an error completion, as a backend that
    gave up after its retries returns), ``exception`` (the call raises), ``timeout`` (the call
    stalls ``timeout_s``, then raises :class:`TimeoutError`), ``garbage`` (a completion of
    random characters that claims success)."""
    timeout_s: float = Field(default=0.05, ge=0.0)
    """How long an injected timeout stalls before it raises (short: tests stay fast)."""


class InjectedFault(ConnectionError):
    """The exception an injected ``exception`` fault raises (a backend connection dropping)."""


class FaultyChatModel:
    """Wraps a :class:`ChatModel`; a seeded ``rate`` of calls fail in one of the fault kinds.

    ``injected`` counts the faults by kind and ``calls`` every call, for the manifest.
    """

    def __init__(self, inner: ChatModel, config: FaultConfig) -> None:
        self.inner = inner
        self.config = config
        self.name = inner.name
        self.injected: Counter[str] = Counter()
        self.calls = 0
        self.garbage: list[str] = []
        """The last 100 junk answers given (tests look for them in the output)."""
        self._rng = random.Random(f"faults|{config.seed}")
        self._lock = threading.Lock()  # draws stay one stream even from worker threads

    def _draw(self) -> tuple[FaultKind | None, random.Random]:
        with self._lock:
            self.calls += 1
            hit = self._rng.random() < self.config.rate
            kind = self._rng.choice(self.config.kinds) if hit else None
            if kind is not None:
                self.injected[kind] += 1
            return kind, random.Random(self._rng.random())

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion:
        kind, rng = self._draw()
        if kind is None:
            return await self.inner.complete(
                messages, tools, sampling=sampling, constraint=constraint
            )
        if kind == "error":
            return Completion(
                finish_reason="error", error="injected fault: backend error", model=self.name
            )
        if kind == "exception":
            raise InjectedFault(f"injected fault: connection to {self.name} dropped")
        if kind == "timeout":
            await anyio.sleep(self.config.timeout_s)
            raise TimeoutError(f"injected fault: {self.name} gave no answer in time")
        junk = "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 80)))
        self.garbage = [*self.garbage[-99:], junk]
        return Completion(text=junk, finish_reason="stop", model=self.name)

    def fault_counts(self) -> dict[str, int]:
        """``{"calls": n, "<kind>": n, ...}`` for the manifest."""
        return {
            "calls": self.calls,
            **{kind: self.injected[kind] for kind in sorted(self.injected)},
        }

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def with_faults(model: ChatModel, config: FaultConfig | None) -> ChatModel:
    """``model`` wrapped in :class:`FaultyChatModel` when ``config`` asks for faults."""
    if config is None or config.rate <= 0:
        return model
    return FaultyChatModel(model, config)


def fault_counts(models: dict[str, ChatModel]) -> dict[str, dict[str, int]]:
    """Injected faults per role, for the roles whose model injects any."""
    return {
        role: model.fault_counts()
        for role, model in models.items()
        if isinstance(model, FaultyChatModel)
    }
