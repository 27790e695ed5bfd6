"""Tools at run time: each tool bound to its executor and its compiled argument validator.

The MCP server lists and calls whatever the registry holds, so tools come from specs (or
Python callables) rather than from Python signatures decorated at import time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
import mcp_types as types
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.executors.base import Executor
from tooldojo.model import Tool


def compile_validator(schema: dict[str, Any], where: str, *, checked: bool = False) -> Validator:
    """A validator for ``schema`` built once (the draft is taken from ``$schema``, else 2020-12).

    Raises :class:`ToolDojoError` naming ``where`` when the schema itself is invalid.
    ``checked``: the schema already passed this very check (a refined registry's tools carry
    ``metadata["schema_checked"]``); at ~5 ms a schema, 10k tools would take a minute.
    """
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        if not checked:
            cls.check_schema(schema)
    except SchemaError as error:
        raise ToolDojoError(f"{where}: invalid JSON Schema: {error.message}") from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def describe_errors(validator: Validator, instance: Any) -> str | None:
    """The most relevant validation error as one line (with its JSON path), or None if valid."""
    errors = list(validator.iter_errors(instance))
    if not errors:
        return None
    best = best_match(errors)
    path = "/" + "/".join(str(part) for part in best.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"at {path}: {best.message}{more}"


@dataclass(frozen=True)
class ToolBinding:
    """A tool, the executor that runs it and its validators (output one only if it has a schema)."""

    tool: Tool
    executor: Executor
    validator: Validator
    output_validator: Validator | None
    mcp_tool: types.Tool


class ToolRegistry:
    """Tools by name, each bound to an executor; names must be unique across tool sets."""

    def __init__(self) -> None:
        self._bindings: dict[str, ToolBinding] = {}
        self._listing: list[types.Tool] | None = None

    def add(self, tools: Iterable[Tool], executor: Executor, *, check_types: bool = True) -> None:
        """Register a tool set served by ``executor``; schemas are checked and compiled now.

        ``check_types=False`` validates only argument names (required ones present, unknown
        ones refused) and leaves values to the executor: for tool sets whose implementation
        is looser than its declared types and whose reference data relies on that (BFCL).
        """
        for tool in tools:
            if tool.name in self._bindings:
                raise ToolDojoError(f"tool {tool.name!r} is registered twice ({tool.source})")
            where = f"tool {tool.name!r} ({tool.source or 'no source'})"
            schema = tool.parameters if check_types else names_only_schema(tool.parameters)
            checked = tool.metadata.get("schema_checked") == "2020-12+formats"
            validator = compile_validator(schema, f"{where} parameters", checked=checked)
            output_schema = _mcp_output_schema(tool)
            output_validator = (
                compile_validator(output_schema, f"{where} output schema", checked=checked)
                if output_schema is not None
                else None
            )
            mcp_tool = types.Tool(
                name=tool.name,
                description=tool.description or None,
                input_schema=tool.parameters,
                output_schema=output_schema,
            )
            self._bindings[tool.name] = ToolBinding(
                tool, executor, validator, output_validator, mcp_tool
            )
        self._listing = None

    def get(self, name: str) -> ToolBinding | None:
        return self._bindings.get(name)

    @property
    def tools(self) -> list[Tool]:
        return [binding.tool for binding in self._bindings.values()]

    def names(self) -> list[str]:
        return list(self._bindings)

    def mcp_tools(self) -> list[types.Tool]:
        """The ``tools/list`` payload, rebuilt only after the registry changes."""
        if self._listing is None:
            self._listing = [binding.mcp_tool for binding in self._bindings.values()]
        return self._listing

    def __len__(self) -> int:
        return len(self._bindings)


def names_only_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` reduced to its argument names: any value type, same required/extra rules."""
    reduced: dict[str, Any] = {
        "type": "object",
        "properties": {name: {} for name in schema.get("properties", {})},
    }
    if "required" in schema:
        reduced["required"] = list(schema["required"])
    if "additionalProperties" in schema:
        reduced["additionalProperties"] = schema["additionalProperties"] is not False
    return reduced


def _mcp_output_schema(tool: Tool) -> dict[str, Any] | None:
    """MCP only allows object output schemas; others are not advertised (results stay text)."""
    schema = tool.output_schema
    if schema and schema.get("type") == "object":
        return schema
    return None
