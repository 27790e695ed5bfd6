"""Tool specs from Python callables: JSON Schema from type hints, text from the docstring.

Only the parameters are derived: a Python return annotation rarely says what a tool returns
on failure (many return an ``{"error": ...}`` dict instead), so no output schema is claimed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import ConfigDict, Field, create_model

from tooldojo.errors import ToolDojoError
from tooldojo.model import Tool

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {argument: description}).

    Hand-written because the one convention we need (``Args:`` with ``name (type): text``
    entries, continuation lines indented deeper) is a few lines, not worth a dependency.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    entry_indent = 0
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section = header.group(1).lower()
            current = None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("args", "arguments", "parameters", "params") or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (current is None or indent <= entry_indent):
            current, entry_indent = match.group(1), indent
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    text = " ".join(part.strip() for part in "\n".join(summary).strip().split("\n\n")[0].split())
    return text, args


def tool_from_callable(
    function: Callable[..., Any], *, name: str | None = None, source: str = ""
) -> Tool:
    """A :class:`Tool` whose parameters mirror ``function``'s signature (``self`` excluded).

    Parameters with defaults are optional; ``**kwargs`` allows extra properties, otherwise
    unknown arguments are rejected by the schema, as the call itself would reject them.
    """
    tool_name = name or function.__name__
    summary, arg_docs = parse_docstring(inspect.getdoc(function))
    try:
        hints = get_type_hints(function)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = dict(getattr(function, "__annotations__", {}))
    fields: dict[str, Any] = {}
    extra_allowed = False
    for index, parameter in enumerate(inspect.signature(function).parameters.values()):
        if index == 0 and parameter.name in ("self", "cls"):
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            extra_allowed = True
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (
            annotation,
            Field(default=default, description=arg_docs.get(parameter.name) or None),
        )
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{tool_name}_arguments", __config__=ConfigDict(arbitrary_types_allowed=True), **fields
        )
        schema = model.model_json_schema()
    except Exception as error:
        raise ToolDojoError(
            f"cannot derive a JSON Schema for {tool_name!r} from its type hints: {error}"
        ) from None
    schema.pop("title", None)
    for property_schema in schema.get("properties", {}).values():
        property_schema.pop("title", None)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    if not extra_allowed:
        schema["additionalProperties"] = False
    return Tool(
        name=tool_name,
        description=summary,
        parameters=schema,
        source=source or f"python:{function.__module__}.{function.__qualname__}",
    )
