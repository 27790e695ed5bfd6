"""A scripted stand-in for a model, for unit tests of orchestration logic only.

It replays given completions (or computes them from the request with a
callable). It exercises the code around a model; it says nothing about
whether any real model works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tooldojo.llm.base import Completion, Constraint, SamplingParams
from tooldojo.model import Message, Tool

Responder = Callable[[list[Message], list[Tool] | None], Completion | str]


class ScriptedChatModel:
    """Answers from a script: a list of completions/strings, or a responder callable.

    Every request is recorded in ``calls`` so tests can assert what was asked.
    """

    def __init__(self, script: Iterable[Completion | str] | Responder, name: str = "scripted"):
        self.name = name
        self._responder: Responder | None = script if callable(script) else None
        self._queue: list[Completion | str] = [] if callable(script) else list(script)
        self.calls: list[tuple[list[Message], list[Tool] | None, SamplingParams | None]] = []

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion:
        self.calls.append((list(messages), tools, sampling))
        if self._responder is not None:
            answer = self._responder(messages, tools)
        elif self._queue:
            answer = self._queue.pop(0)
        else:
            raise RuntimeError(f"{self.name}: script exhausted after {len(self.calls) - 1} calls")
        if isinstance(answer, str):
            answer = Completion(text=answer, model=self.name)
        return answer
