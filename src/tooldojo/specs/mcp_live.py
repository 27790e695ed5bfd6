"""Tools of a live MCP server, over stdio (``stdio:COMMAND ARGS``) or streamable HTTP (a URL)."""

from __future__ import annotations

import shlex
from typing import Any

import anyio

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs.functions import function_tool

STDIO_PREFIX = "stdio:"


def is_live_target(target: str) -> bool:
    return target.startswith((STDIO_PREFIX, "http://", "https://"))


async def _list_tools(target: str, timeout_s: float) -> list[dict[str, Any]]:
    from mcp import Client, StdioServerParameters

    if target.startswith(STDIO_PREFIX):
        argv = shlex.split(target[len(STDIO_PREFIX) :])
        if not argv:
            raise SpecError(target, None, "stdio: needs a command, e.g. 'stdio:python server.py'")
        server: Any = StdioServerParameters(command=argv[0], args=argv[1:])
    else:
        server = target
    tools: list[dict[str, Any]] = []
    with anyio.fail_after(timeout_s):
        async with Client(server, mode="legacy") as client:
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(
                    t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools
                )
                cursor = page.next_cursor
                if not cursor:
                    break
    return tools


def live_mcp_tools(target: str, *, timeout_s: float = 20.0) -> list[tuple[Tool, str]]:
    """List a running server's tools with the ``mcp`` SDK client; errors name the target."""
    try:
        listed = anyio.run(_list_tools, target, timeout_s)
    except SpecError:
        raise
    except TimeoutError:
        raise SpecError(target, None, f"MCP server did not answer within {timeout_s:g} s") from None
    except Exception as error:  # transport failures arrive as many types (and exception groups)
        raise SpecError(target, None, f"cannot list tools: {_root_cause(error)}") from None
    source = target
    return [
        (function_tool(item, "mcp", source=source, where=f"/tools/{i}"), f"/tools/{i}")
        for i, item in enumerate(listed)
    ]


def _root_cause(error: BaseException) -> str:
    """The innermost useful message of an exception (group) from anyio/httpx/mcp."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error) or type(error).__name__
    return text.splitlines()[0]
