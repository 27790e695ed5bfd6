"""The one interface every executor implements, and the outcome it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tooldojo.mcp.episodes import Episode
from tooldojo.model import Tool


@dataclass
class ToolOutcome:
    """What a call produced: a JSON-able ``value`` and whether it is an error.

    ``is_error`` results are still *results* (MCP ``isError``): the assistant reads them and
    should react, e.g. retry after a rate limit. Failures of the executor itself are raised.
    """

    value: Any
    is_error: bool = False
    injected: bool = False
    """A failure injected on purpose (fault injection), not one of the tool's own: the server
    marks its result so that verification can keep it apart from unplanned failures."""


class ToolExecutionError(Exception):
    """An executor's way to say "this call failed" with a message meant for the assistant."""


@runtime_checkable
class Executor(Protocol):
    """Runs one validated call of ``tool`` inside ``episode``.

    Arguments have already been validated against ``tool.parameters``. The server holds the
    episode's lock during the call and enforces the timeout, so executors stay simple; they
    may keep per-episode state in ``episode.state`` under a key of their own.
    """

    name: str

    async def execute(
        self, tool: Tool, arguments: dict[str, Any], episode: Episode
    ) -> ToolOutcome: ...
