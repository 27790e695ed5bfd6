"""BFCL's multi-turn environments as a ready ``python`` tool pack.

The classes come from ``bfcl-eval`` (GorillaFileSystem, MessageAPI, TwitterAPI, TicketAPI,
TradingBot, TravelAPI, VehicleControlAPI, MathAPI). Each episode gets fresh instances set up
from the episode's init, which is BFCL's ``initial_config`` (class name → config), exactly as
BFCL's own executor does. This pack exists to evaluate on multi-turn BFCL and to test
executors; it must never be a source of training data.
"""

from __future__ import annotations

import ast
import copy
import importlib
from collections.abc import Iterable
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.executors.python import PythonExecutor
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.model import Tool

_BACKEND = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
BFCL_CLASSES: dict[str, str] = {
    "GorillaFileSystem": f"{_BACKEND}.gorilla_file_system",
    "MathAPI": f"{_BACKEND}.math_api",
    "MessageAPI": f"{_BACKEND}.message_api",
    "TwitterAPI": f"{_BACKEND}.posting_api",
    "TicketAPI": f"{_BACKEND}.ticket_api",
    "TradingBot": f"{_BACKEND}.trading_bot",
    "TravelAPI": f"{_BACKEND}.travel_booking",
    "VehicleControlAPI": f"{_BACKEND}.vehicle_control",
}
_STATELESS = {"MathAPI"}  # BFCL does not call _load_scenario on these


def load_bfcl_class(class_name: str) -> type:
    if class_name not in BFCL_CLASSES:
        raise ToolDojoError(
            f"unknown BFCL environment {class_name!r}; known: {', '.join(BFCL_CLASSES)}"
        )
    try:
        module = importlib.import_module(BFCL_CLASSES[class_name])
    except ImportError as error:
        raise ToolDojoError(
            "the BFCL tool pack needs bfcl-eval installed "
            f"(pip install --no-deps bfcl-eval): {error}"
        ) from None
    return getattr(module, class_name)


def bfcl_executor(
    classes: Iterable[str] | None = None, *, long_context: bool = False, offload: bool = False
) -> PythonExecutor:
    """A :class:`PythonExecutor` over BFCL's environment classes (all eight by default).

    The episode init is BFCL's ``initial_config``; like BFCL, a class missing from it starts
    from ``{}``. ``offload`` defaults to False: these methods are quick, in-memory and trusted.
    """
    names = list(classes) if classes is not None else list(BFCL_CLASSES)

    def setup(instance: Any, init: dict[str, Any]) -> None:
        class_name = type(instance).__name__
        if class_name not in _STATELESS:
            config = copy.deepcopy(init.get(class_name, {}))
            instance._load_scenario(config, long_context=long_context)

    executor = PythonExecutor(
        classes=[load_bfcl_class(name) for name in names], setup=setup, offload=offload
    )
    for tool in executor.tools:
        tool.source = f"bfcl:{tool.source.removeprefix('python:')}"
    return executor


def bfcl_registry(
    classes: Iterable[str] | None = None, *, long_context: bool = False
) -> tuple[ToolRegistry, PythonExecutor]:
    """A registry serving the pack, and its executor (for :func:`bfcl_instances`).

    Arguments are checked by name only: BFCL's environments are looser than their type hints
    and BFCL's ground truth relies on it (``close_ticket(ticket_id='ticket_001')`` for an
    ``int`` id closes a ticket whose id is that string), so type checks would change results.
    """
    executor = bfcl_executor(classes, long_context=long_context)
    registry = ToolRegistry()
    registry.add(executor.tools, executor, check_types=False)
    return registry, executor


def bfcl_instances(executor: PythonExecutor, episode: Any) -> dict[str, Any]:
    """The episode's live environment instances by class name (for state comparison)."""
    return {
        key[2].__name__: instance
        for key, instance in episode.state.items()
        if isinstance(key, tuple) and len(key) == 3 and key[1] == id(executor)
    }


def parse_call_string(text: str, tools: dict[str, Tool]) -> tuple[str, dict[str, Any]]:
    """Parse one BFCL ground-truth call such as ``cd(folder='temp')`` into (name, arguments).

    Positional arguments are bound by the order of the tool's schema properties, which
    follows the Python signature (see :func:`tooldojo.mcp.introspect.tool_from_callable`).
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ToolDojoError(f"not a call: {text!r} ({error.msg})") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ToolDojoError(f"not a plain function call: {text!r}")
    name = node.func.id
    if name not in tools:
        raise ToolDojoError(f"{text!r} calls unknown tool {name!r}")
    order = list(tools[name].properties)
    arguments: dict[str, Any] = {}
    for index, arg in enumerate(node.args):
        arguments[order[index]] = _literal(arg, text)
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ToolDojoError(f"**kwargs are not supported in {text!r}")
        arguments[keyword.arg] = _literal(keyword.value, text)
    return name, arguments


def _literal(node: ast.expr, text: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise ToolDojoError(f"argument is not a literal in {text!r}") from None
    return _tuples_to_lists(value)


def _tuples_to_lists(value: Any) -> Any:
    """JSON has no tuples: what a client would send for a tuple is a list."""
    if isinstance(value, tuple | list):
        return [_tuples_to_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _tuples_to_lists(item) for key, item in value.items()}
    return value
