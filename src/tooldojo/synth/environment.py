"""Wiring a synthesis run: the tool server, its MCP client sessions, and the BFCL firewall.

The assistant reaches tools only through an MCP client talking to our own server
(:mod:`tooldojo.mcp`), in memory by default (about 0.13 ms a round trip), so synthesis
exercises exactly the path a deployed assistant would. The server's executor is ``simulated``
(the server-role model plays APIs that exist only as specs) or ``python:TARGET`` (real
callables whose state the episodes really change).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.llm.base import ChatModel, SamplingParams
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import ToolServer
from tooldojo.model import Tool


def bfcl_data_root() -> Path | None:
    """Where the installed ``bfcl_eval`` package lives (``None`` when it is not installed)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def refuse_bfcl_inputs(paths: Sequence[str], executor: str) -> None:
    """BFCL is our test set: its function docs and environments may never feed synthesis.

    The quick check by name and path, with a clear message for the obvious cases; the tools
    themselves are then checked by content (:func:`tooldojo.bfcl_guard.enforce_tools`), which
    also catches a ``python:bfcl_eval...`` executor, a live MCP server serving BFCL's pack and
    a renamed copy of BFCL's data.
    """
    if executor.split(":", 1)[0] == "bfcl":
        raise ToolDojoError(
            "--executor bfcl is for evaluation only: BFCL's environments may not feed synthesis"
        )
    root = bfcl_data_root()
    for path in paths:
        resolved = Path(path).resolve()
        inside = root is not None and resolved.is_relative_to(root)
        if inside or resolved.name.startswith("BFCL_v"):
            raise ToolDojoError(
                f"{path}: BFCL data is the test set and may not be a synthesis input"
            )


def build_tool_server(
    tools: Sequence[Tool],
    executor: str,
    *,
    server_model: ChatModel | None = None,
    server_sampling: SamplingParams | None = None,
    failure_rate: float = 0.0,
    seed: int = 0,
    timeout_s: float = 60.0,
) -> tuple[ToolServer, list[Tool]]:
    """A server over ``tools`` with the chosen executor, and the tools it serves.

    ``python:TARGET`` may be given without specs: the tools are then derived from the
    callables' signatures and docstrings.
    """
    kind, _, target = executor.partition(":")
    registry = ToolRegistry()
    if kind == "simulated":
        from tooldojo.mcp.executors.simulated import SimulatedExecutor

        if not tools:
            raise ToolDojoError("--executor simulated needs tools: give --specs files")
        if server_model is None:
            raise ToolDojoError("--executor simulated needs a model for the server role")
        simulated = SimulatedExecutor(
            server_model, failure_rate=failure_rate, seed=seed, sampling=server_sampling
        )
        from tooldojo.mcp.factory import add_routed  # pylib tools run for real

        add_routed(registry, tools, simulated)
    elif kind == "python":
        from tooldojo.mcp.executors.python import PythonExecutor

        if not target:
            raise ToolDojoError("--executor python needs a target: python:MODULE[:CLASS]")
        python = PythonExecutor.from_target(target, tools=list(tools) or None)
        registry.add(python.tools, python)
    else:
        raise ToolDojoError(
            f"--executor must be simulated or python:MODULE[:CLASS], not {executor!r}"
        )
    return ToolServer(registry, name="tooldojo-synth", call_timeout_s=timeout_s), registry.tools


def in_memory_connect(server: ToolServer) -> Any:
    """A ``connect(names)`` opening one in-memory MCP client session per episode, on a view of
    ``server`` that offers only the episode's tools (see :meth:`ToolServer.scoped`)."""
    from mcp import Client

    @asynccontextmanager
    async def connect(names: Sequence[str]) -> AsyncIterator[Any]:
        async with Client(server.scoped(names)) as client:
            yield client

    return connect
