"""The MCP server: the SDK's low-level ``Server`` listing and calling a :class:`ToolRegistry`.

Every failure of a call (unknown tool, invalid arguments, an executor exception, a timeout,
output that breaks the tool's output schema) becomes an ``isError`` result with a clear
message, which is what an assistant can learn from; the server itself never goes down.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

import anyio
import mcp_types as types
import sniffio
from mcp.server import Server

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.episodes import (
    DEFAULT_EPISODE,
    EPISODE_INIT_META_KEY,
    EPISODE_META_KEY,
    RESULT_FIELDS_META_KEY,
    CallRecord,
    EpisodeStore,
)
from tooldojo.mcp.executors.base import ToolExecutionError, ToolOutcome
from tooldojo.mcp.registry import ToolRegistry, describe_errors

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT_S = 30.0
INJECTED_META_KEY = "tooldojo/injected_failure"
"""``_meta`` key of a result whose failure was injected on purpose (fault injection)."""
SIMULATED_META_KEY = "tooldojo/simulated"
"""``_meta`` key of a result a model wrote (an executor with ``simulated = True``), so a
trajectory can tell it from a real tool result in its accounting."""


class ToolServer:
    """Serves a registry over MCP; one instance serves many concurrent episodes.

    ``server`` is the SDK's low-level server: hand it to ``mcp.Client(server)`` in-process,
    or to :mod:`tooldojo.mcp.transports` for stdio and streamable HTTP. :meth:`call` runs
    the same path without the protocol, for callers living in the same process.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        name: str = "tooldojo",
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        episodes: EpisodeStore | None = None,
        instructions: str | None = None,
    ):
        self.registry = registry
        self.call_timeout_s = call_timeout_s
        self.episodes = episodes if episodes is not None else EpisodeStore()
        self.server: Server[Any] = Server(
            name,
            version=_version(),
            instructions=instructions,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
        )

    async def _on_list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.registry.mcp_tools())

    def scoped(self, names: Iterable[str]) -> Server[Any]:
        """A low-level server that lists and calls only ``names``, sharing this one's registry,
        executors and episode state: an episode's session sees the tools its episode offers.

        Why: the SDK's client lists every tool on a session's first successful call (to find
        output schemas), and over a refined corpus of 53,707 tools that listing (built,
        serialized and validated by pydantic on the event loop's thread) took most of that
        thread during synthesis and left the model engines waiting for requests. A call to a
        tool outside the scope fails as an unknown tool, as it would on a server offering only
        those tools.
        """
        offered = list(dict.fromkeys(names))
        bindings = {name: self.registry.get(name) for name in offered}
        missing = [name for name, binding in bindings.items() if binding is None]
        if missing:
            raise ToolDojoError(f"this server has no tool {', '.join(map(repr, missing))}")
        listing = [binding.mcp_tool for binding in bindings.values() if binding is not None]

        async def on_list_tools(
            ctx: Any, params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return types.ListToolsResult(tools=listing)

        async def on_call_tool(
            ctx: Any, params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            if params.name not in bindings:
                return error_result(
                    f"unknown tool {params.name!r}; this session offers: {', '.join(offered)}"
                )
            return await self._on_call_tool(ctx, params)

        return Server(
            self.server.name,
            version=self.server.version,
            instructions=self.server.instructions,
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
        )

    async def _on_call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        meta = params.meta or {}
        episode_id = meta.get(EPISODE_META_KEY) or _transport_session_id(ctx) or DEFAULT_EPISODE
        init = meta.get(EPISODE_INIT_META_KEY)
        if init is not None and not isinstance(init, dict):
            return error_result(f"_meta[{EPISODE_INIT_META_KEY!r}] must be a JSON object")
        fields = meta.get(RESULT_FIELDS_META_KEY) or []
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            return error_result(f"_meta[{RESULT_FIELDS_META_KEY!r}] must be a list of names")
        return await self.call(
            params.name,
            params.arguments or {},
            episode=str(episode_id),
            init=init,
            result_fields=fields,
        )

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        episode: str = DEFAULT_EPISODE,
        init: dict[str, Any] | None = None,
        result_fields: list[str] | None = None,
    ) -> types.CallToolResult:
        """Validate and execute one call in ``episode`` (created from ``init`` if new);
        ``result_fields``: fields the caller's plan reads from the result (see
        ``Episode.result_fields``)."""
        binding = self.registry.get(name)
        if binding is None:
            known = ", ".join(sorted(self.registry.names())[:20])
            return error_result(f"unknown tool {name!r}; this server has: {known}")
        if not isinstance(arguments, dict):
            return error_result(f"arguments of {name!r} must be a JSON object")
        problem = describe_errors(binding.validator, arguments)
        if problem is not None:
            return error_result(f"invalid arguments for {name!r} {problem}")

        result = await self._result(binding, name, arguments, episode, init, result_fields or [])
        if getattr(binding.executor, "simulated", False):
            result.meta = {**(result.meta or {}), SIMULATED_META_KEY: True}
        return result

    async def _result(
        self,
        binding: Any,
        name: str,
        arguments: dict[str, Any],
        episode: Any,
        init: Any,
        result_fields: list[str],
    ) -> Any:
        state = self.episodes.get_or_create(episode, init)
        async with state.lock:
            state.result_fields = result_fields
            try:
                outcome = await self._execute(binding, arguments, state)
            finally:
                state.result_fields = []
            state.log.append(CallRecord(name, arguments, outcome.value, outcome.is_error))
        if outcome.is_error:
            result = error_result(outcome.value)
            if outcome.injected:
                result.meta = {INJECTED_META_KEY: True}
            return result
        if binding.output_validator is not None:
            problem = describe_errors(binding.output_validator, outcome.value)
            if problem is not None:
                return error_result(
                    f"{name!r} returned a result that breaks its output schema {problem}"
                )
        return success_result(outcome.value)

    async def _execute(self, binding: Any, arguments: dict[str, Any], state: Any) -> ToolOutcome:
        name = binding.tool.name
        call = binding.executor.execute(binding.tool, arguments, state)
        # An executor bounded by tokens (the simulated one) says how long its budget may take.
        limit = max(self.call_timeout_s, getattr(binding.executor, "min_timeout_s", 0.0))
        try:
            # asyncio's own timeout when on asyncio: about 3x cheaper per call than anyio's
            # cancel scope, which matters on the in-memory fast path.
            if sniffio.current_async_library() == "asyncio":
                async with asyncio.timeout(limit):
                    return await call
            with anyio.fail_after(limit):
                return await call
        except TimeoutError:
            cause = getattr(binding.executor, "timeout_cause", None)
            why = f": {cause(limit)}" if cause is not None else ""
            return ToolOutcome(f"{name!r} timed out after {limit:g} s{why}", True)
        except ToolExecutionError as error:
            return ToolOutcome(str(error), True)
        except Exception as error:  # an executor bug must not take the server down
            logger.debug("executor %s failed on %s", binding.executor.name, name, exc_info=True)
            return ToolOutcome(f"{name!r} failed: {type(error).__name__}: {error}", True)


def render_value(value: Any) -> str:
    """Text content of a result: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def success_result(value: Any) -> types.CallToolResult:
    structured = value if isinstance(value, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=render_value(value))],
        structured_content=structured,
    )


def error_result(value: Any) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=render_value(value))], is_error=True
    )


def result_value(result: types.CallToolResult) -> Any:
    """The value a result carries: structured content if any, else its text parsed as JSON
    when it is JSON, else the text itself (the inverse of :func:`success_result`)."""
    if result.structured_content is not None:
        return result.structured_content
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    try:
        return json.loads(text)
    except ValueError:
        return text


def _transport_session_id(ctx: Any) -> str | None:
    """The streamable-HTTP session id, when the client negotiated a stateful (legacy) session."""
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    return headers.get("mcp-session-id")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tooldojo")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0"
