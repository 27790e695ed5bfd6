"""Building a :class:`ToolServer` from the CLI's words: specs plus an executor choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.cli import EXECUTOR_CHOICES
from tooldojo.mcp.executors.base import Executor
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import DEFAULT_CALL_TIMEOUT_S, ToolServer
from tooldojo.model import Tool


@dataclass
class ServeOptions:
    """Everything ``tooldojo serve`` needs besides the transport."""

    specs: Sequence[str] = ()
    executor: str = "simulated"
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    model: str | None = None
    failure_rate: float = 0.0
    seed: int = 0
    allow_hosts: Sequence[str] = ()
    base_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_tool_server(options: ServeOptions) -> ToolServer:
    """Load the specs, build the chosen executor and return a server over them."""
    kind, _, target = options.executor.partition(":")
    registry = ToolRegistry()
    if kind == "bfcl":
        from tooldojo.mcp.bfcl_pack import bfcl_registry

        classes = [name.strip() for name in target.split(",") if name.strip()] or None
        registry, _ = bfcl_registry(classes)
        return ToolServer(registry, name="tooldojo-bfcl", call_timeout_s=options.timeout_s)

    tools = _load_specs(options.specs) if options.specs else None
    if kind == "python" and not target and tools:  # library tools only (--specs pylib:...)
        add_routed(registry, tools, None)
    elif kind == "python":
        from tooldojo.mcp.executors.python import PythonExecutor

        if not target:
            raise ToolDojoError("--executor python needs a target: python:MODULE[:CLASS]")
        executor: Any = PythonExecutor.from_target(target, tools=tools)
        registry.add(executor.tools, executor)
    elif kind == "simulated":
        from tooldojo.mcp.executors.simulated import SimulatedExecutor

        if not tools:
            raise ToolDojoError("--executor simulated needs at least one --specs file")
        from tooldojo.mcp.executors.python import is_library_tool

        if all(is_library_tool(tool) for tool in tools):  # nothing to simulate: no model
            add_routed(registry, tools, None)
        else:
            executor = SimulatedExecutor(
                load_server_model(options.model),
                failure_rate=options.failure_rate,
                seed=options.seed,
            )
            add_routed(registry, tools, executor)
    elif kind == "http":
        from tooldojo.mcp.executors.http import HttpExecutor

        if not tools:
            raise ToolDojoError("--executor http needs at least one --specs file (OpenAPI)")
        if not options.allow_hosts:
            raise ToolDojoError(
                "--executor http makes real network calls: name the hosts it may reach "
                "with --allow-host"
            )
        executor = HttpExecutor(options.allow_hosts, base_url=options.base_url)
        from tooldojo.mcp.executors.python import is_library_tool

        executor.check_tools([tool for tool in tools if not is_library_tool(tool)])
        add_routed(registry, tools, executor)
    else:
        raise ToolDojoError(
            f"--executor must be one of {EXECUTOR_CHOICES}, not {options.executor!r}"
        )
    return ToolServer(registry, call_timeout_s=options.timeout_s)


def add_routed(registry: ToolRegistry, tools: Sequence[Tool], fallback: Executor | None) -> None:
    """Register a mixed pool, each tool with its executor: library tools (``metadata["python"]``,
    from ``pylib:`` specs) are executed for real by the python executor, the rest go to
    ``fallback`` (e.g. simulated by the server-role model)."""
    from tooldojo.mcp.executors.python import LibraryExecutor, is_library_tool

    library = [tool for tool in tools if is_library_tool(tool)]
    others = [tool for tool in tools if not is_library_tool(tool)]
    if library:
        LibraryExecutor.check_tools(library)
        registry.add(library, LibraryExecutor())
    if others:
        if fallback is None:
            names = ", ".join(tool.name for tool in others[:5])
            raise ToolDojoError(
                f"{len(others)} tools are not Python library tools ({names}); "
                "--executor python without a target runs only pylib: specs"
            )
        registry.add(others, fallback)


def _load_specs(paths: Sequence[str]) -> list[Any]:
    from tooldojo.specs import load_tools

    tools = load_tools(list(paths))
    if not tools:
        raise ToolDojoError(f"no tools found in {', '.join(paths)}")
    return tools


def load_server_model(spec: str | None) -> Any:
    """The model that plays the API: a ``tooldojo.llm`` model spec (``llamacpp[:GGUF]``,
    ``openai:MODEL@URL``, ``transformers:PATH``); default the embedded llama.cpp model."""
    from tooldojo.llm import load_model

    return load_model(spec or "llamacpp")
