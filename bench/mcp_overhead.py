"""Round-trip overhead of tooldojo's MCP server against the bare SDK server.

Both serve the same tool (``add(a, b)``); the bare server is the SDK's low-level ``Server``
with a hand-written handler (no validation, no episodes). We time sequential
``call_tool`` round trips from a real ``mcp.Client`` in-memory and over streamable HTTP on
loopback (server in a child process), and print medians and ratios.
Goal: tooldojo within 1.2x of the bare SDK.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mcp_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import mcp
import mcp_types as types
from mcp.server import Server

from tooldojo.mcp.episodes import EPISODE_META_KEY
from tooldojo.mcp.executors.python import PythonExecutor
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import ToolServer
from tooldojo.mcp.transports import print_ready, serve_http


def add(a: int, b: int) -> dict[str, int]:
    """Add two integers."""
    return {"sum": a + b}


def bare_server() -> Server[Any]:
    tool = types.Tool(
        name="add",
        description="Add two integers.",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        value = add(args["a"], args["b"])
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f'{{"sum": {value["sum"]}}}')],
            structured_content=value,
        )

    return Server("bare", on_list_tools=list_tools, on_call_tool=call_tool)


def tooldojo_server(offload: bool) -> ToolServer:
    executor = PythonExecutor(functions=[add], offload=offload)
    registry = ToolRegistry()
    registry.add(executor.tools, executor)
    return ToolServer(registry)


class _Wrapped:
    """Lets :func:`serve_http` serve the bare SDK server exactly like ours."""

    def __init__(self, server: Server[Any]):
        self.server = server


async def time_calls(client: mcp.Client, calls: int, meta: dict[str, Any] | None) -> float:
    """Median seconds per round trip after a warm-up."""
    for _ in range(50):
        await client.call_tool("add", {"a": 1, "b": 2}, meta=meta)
    samples = []
    for index in range(calls):
        started = time.perf_counter()
        result = await client.call_tool("add", {"a": index, "b": 2}, meta=meta)
        samples.append(time.perf_counter() - started)
        assert not result.is_error
    return statistics.median(samples)


@contextmanager
def server_process(variant: str) -> Iterator[str]:
    """This script in ``--serve VARIANT`` mode in a child process; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "serving MCP on " in line:
                yield line.split("serving MCP on ", 1)[1].strip()
                break
        else:
            raise RuntimeError(f"the {variant} server did not start")
    finally:
        process.terminate()
        process.wait(timeout=30)


async def over_http(variant: str, calls: int, meta: dict[str, Any] | None) -> float:
    with server_process(variant) as url:
        async with mcp.Client(url) as client:
            return await time_calls(client, calls, meta)


def build(variant: str) -> Server[Any]:
    if variant == "bare":
        return bare_server()
    return tooldojo_server(offload=variant == "thread").server


async def serve(variant: str) -> None:
    await serve_http(_Wrapped(build(variant)), port=0, on_ready=print_ready)


async def main(calls: int) -> None:
    meta = {EPISODE_META_KEY: "bench"}
    variants = {
        "bare": ("bare SDK", meta),  # same request; the bare server ignores the episode
        "inline": ("tooldojo python (inline)", meta),
        "thread": ("tooldojo python (thread)", meta),
    }
    for transport in ("in-memory", "http"):
        results = {}
        for variant, (label, call_meta) in variants.items():
            if transport == "in-memory":
                async with mcp.Client(build(variant)) as client:
                    results[label] = await time_calls(client, calls, call_meta)
            else:
                results[label] = await over_http(variant, calls, call_meta)
        base = results["bare SDK"]
        where = "same process" if transport == "in-memory" else "server in a child process"
        print(f"{transport} ({calls} calls, {where}, median round trip)")
        for label, median in results.items():
            print(f"  {label:26s} {median * 1000:8.3f} ms   {median / base:5.2f}x bare")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--serve", choices=["bare", "inline", "thread"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, args.serve)
    else:
        anyio.run(main, args.calls)
