"""The ``python`` executor: tools that are real Python callables.

A tool set is either plain functions or the public methods of a class; a class gets a fresh
instance per episode (created on the episode's first call to it, then set up from the
episode's init), so episodes never share state.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
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
