"""The ``python`` executor: tools that are real Python callables.

A tool set is either plain functions or the public methods of a class; a class gets a fresh
instance per episode (created on the episode's first call to it, then set up from the
episode's init), so episodes never share state. :class:`LibraryExecutor` runs the tools
introspected from installed libraries (``--specs pylib:...``) in sandboxed processes.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import inspect
import json
import queue
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.episodes import Episode
from tooldojo.mcp.executors.base import ToolOutcome
from tooldojo.mcp.introspect import tool_from_callable
from tooldojo.model import Tool

Setup = Callable[[Any, dict[str, Any]], None]
"""``setup(instance, episode_init)``: prepares a new per-episode instance of a tool class."""


class PythonExecutor:
    """Runs tools implemented by Python functions or by methods of per-episode instances.

    ``offload``: run synchronous callables in a worker thread, so a slow or hung one cannot
    stall the event loop and the server's timeout can answer for it (the thread itself cannot
    be killed; it is abandoned). Set it False for fast, trusted callables to save the thread
    hop. Coroutine functions are always awaited directly.
    """

    name = "python"

    def __init__(
        self,
        *,
        functions: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        classes: Iterable[type] = (),
        setup: Setup | None = None,
        tools: Iterable[Tool] | None = None,
        offload: bool = True,
    ):
        self.offload = offload
        self.setup = setup
        self._targets: dict[str, tuple[type | None, Callable[..., Any]]] = {}
        items = (
            functions.items()
            if isinstance(functions, Mapping)
            else ((function.__name__, function) for function in functions)
        )
        for tool_name, function in items:
            self._add_target(tool_name, None, function)
        for cls in classes:
            for method_name, method in public_methods(cls).items():
                self._add_target(method_name, cls, method)
        derived = {
            name: tool_from_callable(fn, name=name) for name, (_, fn) in self._targets.items()
        }
        if tools is None:
            self.tools = list(derived.values())
        else:
            self.tools = []
            for tool in tools:
                key = tool.name if tool.name in self._targets else tool.original_name
                if key not in self._targets:
                    raise ToolDojoError(
                        f"tool {tool.name!r} ({tool.source}) has no Python callable of that name"
                    )
                if key != tool.name:
                    self._targets[tool.name] = self._targets[key]
                self.tools.append(tool)

    def _add_target(self, name: str, cls: type | None, function: Callable[..., Any]) -> None:
        if name in self._targets:
            raise ToolDojoError(f"two Python callables would both be the tool {name!r}")
        self._targets[name] = (cls, function)

    async def execute(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> ToolOutcome:
        cls, function = self._targets[tool.name]
        if cls is not None:
            function = getattr(self.instance(cls, episode), function.__name__)
        if inspect.iscoroutinefunction(function):
            value = await function(**arguments)
        elif self.offload:
            call = functools.partial(function, **arguments)
            value = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        else:
            value = function(**arguments)
        return ToolOutcome(jsonable(value))

    def instance(self, cls: type, episode: Episode) -> Any:
        """The episode's instance of ``cls``, created and set up on first use."""
        key = (self.name, id(self), cls)
        instance = episode.state.get(key)
        if instance is None:
            instance = cls()
            if self.setup is not None:
                self.setup(instance, episode.init)
            episode.state[key] = instance
        return instance

    @classmethod
    def from_target(
        cls, target: str, *, tools: Iterable[Tool] | None = None, offload: bool = True
    ) -> PythonExecutor:
        """Build from ``module``, ``module:Class``, ``path/file.py`` or ``path/file.py:Class``.

        A module contributes its public functions defined in it; a class its public methods.
        """
        module_part, _, class_name = target.partition(":")
        module = _import(module_part)
        if class_name:
            found = getattr(module, class_name, None)
            if not inspect.isclass(found):
                raise ToolDojoError(f"python:{target}: {module_part} has no class {class_name!r}")
            return cls(classes=[found], tools=tools, offload=offload)
        functions = [
            value
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and not name.startswith("_")
            and value.__module__ == module.__name__
        ]
        if not functions:
            raise ToolDojoError(f"python:{target}: no public functions defined in {module_part}")
        return cls(functions=functions, tools=tools, offload=offload)


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """Methods of ``cls`` not starting with ``_`` (inherited ones included), as functions."""
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


_SCALARS = (str, bool, int, float, type(None))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data; what JSON cannot hold becomes its ``str``."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict) and all(
        type(key) is str and isinstance(item, _SCALARS) for key, item in value.items()
    ):
        return value  # the common flat result: nothing to convert, skip the JSON round trip
    return json.loads(json.dumps(value, default=str))


def _import(module_part: str) -> Any:
    try:
        if module_part.endswith(".py") or "/" in module_part:
            path = Path(module_part)
            if not path.is_file():
                raise ToolDojoError(f"python:{module_part}: no such file")
            name = f"tooldojo_user_tools_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ToolDojoError(f"python:{module_part}: cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(module_part)
    except ToolDojoError:
        raise
    except Exception as error:
        raise ToolDojoError(
            f"python:{module_part}: import failed: {type(error).__name__}: {error}"
        ) from error


class LibraryExecutor:
    """Runs library tools (``metadata["python"] = "module:qualname"``, from ``pylib:`` specs)
    for real, in sandboxed worker processes.

    Each call is checked against the module allowlist and name denylist again (a registry
    file could name ``os:system``), its arguments coerced to what the function takes, and
    run in a worker with a time limit, a memory limit and a cap on the result's size. Every
    failure becomes an ``isError`` result that says why, which the assistant can act on.
    """

    name = "python"

    def __init__(
        self,
        *,
        workers: int = 2,
        timeout_s: float = 5.0,
        memory_mb: int = 2048,
        max_chars: int = 20_000,
    ):
        from tooldojo.specs.pytools._call import Sandbox

        self._idle: queue.SimpleQueue[Sandbox] = queue.SimpleQueue()
        self._sandboxes = [
            Sandbox(timeout_s=timeout_s, memory_mb=memory_mb, max_chars=max_chars)
            for _ in range(max(1, workers))
        ]
        for sandbox in self._sandboxes:
            self._idle.put(sandbox)
        self._limiter = anyio.CapacityLimiter(len(self._sandboxes))
        atexit.register(self.close)

    @staticmethod
    def check_tools(tools: Iterable[Tool]) -> None:
        """Raise :class:`ToolDojoError` for a tool this executor may not run."""
        from tooldojo.specs.pytools._safety import check_ref

        for tool in tools:
            ref = tool.metadata.get("python")
            problem = check_ref(ref) if isinstance(ref, str) else "it has no metadata['python']"
            if problem:
                raise ToolDojoError(f"tool {tool.name!r} cannot be executed: {problem}")

    async def execute(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> ToolOutcome:
        from tooldojo.specs.pytools._call import CallFailed, call_plan, coerce
        from tooldojo.specs.pytools._safety import check_ref

        ref = tool.metadata.get("python")
        problem = check_ref(ref) if isinstance(ref, str) else "no metadata['python']"
        if problem:
            return ToolOutcome(f"{tool.name!r} may not be executed: {problem}", True)
        plan = call_plan(tool.metadata)
        values = coerce(tool.parameters, arguments)
        try:
            value = await anyio.to_thread.run_sync(
                functools.partial(self._call, plan, values), limiter=self._limiter
            )
        except CallFailed as failure:
            return ToolOutcome(f"{tool.name} failed ({failure.reason}): {failure}", True)
        return ToolOutcome(value)

    def _call(self, plan: dict[str, Any], arguments: dict[str, Any]) -> Any:
        sandbox = self._idle.get()  # the limiter guarantees one is idle
        try:
            return sandbox.call(plan, arguments)
        finally:
            self._idle.put(sandbox)

    def close(self) -> None:
        """Stop the worker processes (they also exit on their own when this process ends)."""
        for sandbox in self._sandboxes:
            sandbox.close()


def is_library_tool(tool: Tool) -> bool:
    """Whether ``tool`` names a library callable to execute (``metadata["python"]``)."""
    return isinstance(tool.metadata.get("python"), str)
