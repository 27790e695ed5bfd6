"""Function-list formats → :class:`Tool`: OpenAI ``tools``, bare functions, BFCL docs, MCP, ours.

Each item is recognized by its own shape, so one file may mix OpenAI entries and
bare function objects; BFCL docs are told apart by their Python-flavoured type
names (``dict``, ``float``, ``tuple``, ``any``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs._schema import bfcl_to_json_schema, check_schema, pointer, sanitize_name

_BFCL_ONLY_TYPES = {"dict", "float", "tuple", "any"}


def _uses_bfcl_types(schema: Any) -> bool:
    if isinstance(schema, dict):
        if schema.get("type") in _BFCL_ONLY_TYPES:
            return True
        return any(_uses_bfcl_types(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_uses_bfcl_types(v) for v in schema)
    return False


def item_kind(item: Any) -> str | None:
    """Which format one list item is in, or None if it is not a function description."""
    if not isinstance(item, dict):
        return None
    if item.get("type") == "function" and isinstance(item.get("function"), dict):
        return "openai"
    if "inputSchema" in item and "name" in item:
        return "mcp"
    if "name" in item and "source" in item and "parameters" in item:
        return "tooldojo"
    if "name" in item and ("parameters" in item or "description" in item):
        return "bfcl" if _uses_bfcl_types(item.get("parameters")) else "openai"
    return None


def _object_schema(schema: Any, *, source: str, where: str) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise SpecError(source, where, "parameters must be a JSON Schema object")
    if "type" not in schema and ("properties" in schema or not schema):
        schema = {"type": "object", **schema}
    if schema.get("type") != "object":
        raise SpecError(
            source,
            f"{where}/type",
            f'parameters must have "type": "object", not {schema.get("type")!r}',
        )
    check_schema(schema, source=source, where=where)
    return schema


def _named(raw_name: Any, *, source: str, where: str) -> tuple[str, str]:
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise SpecError(source, f"{where}/name", "a function needs a non-empty string name")
    return sanitize_name(raw_name), raw_name


def function_tool(item: dict[str, Any], kind: str, *, source: str, where: str) -> Tool:
    """One item of a function list, as a normalized tool."""
    if kind == "openai":
        if item.get("type") == "function" and "function" in item:
            item, where = item["function"], f"{where}/function"
        name, original = _named(item.get("name"), source=source, where=where)
        parameters = _object_schema(
            item.get("parameters"), source=source, where=f"{where}/parameters"
        )
        return Tool(
            name=name,
            original_name=original,
            description=item.get("description") or "",
            parameters=parameters,
            source=f"openai:{source}",
        )
    if kind == "bfcl":
        name, original = _named(item.get("name"), source=source, where=where)
        converted = bfcl_to_json_schema(
            item.get("parameters"), source=source, where=f"{where}/parameters"
        )
        parameters = _object_schema(converted, source=source, where=f"{where}/parameters")
        return Tool(
            name=name,
            original_name=original,
            description=item.get("description") or "",
            parameters=parameters,
            source=f"bfcl:{source}",
        )
    if kind == "mcp":
        name, original = _named(item.get("name"), source=source, where=where)
        parameters = _object_schema(
            item.get("inputSchema"), source=source, where=f"{where}/inputSchema"
        )
        output = item.get("outputSchema")
        if output is not None:
            check_schema(output, source=source, where=f"{where}/outputSchema")
        metadata = {k: item[k] for k in ("title", "annotations", "_meta") if item.get(k)}
        return Tool(
            name=name,
            original_name=original,
            description=item.get("description") or "",
            parameters=parameters,
            output_schema=output,
            metadata=metadata,
            source=f"mcp:{source}",
        )
    if kind == "tooldojo":
        try:
            tool = Tool.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            raise SpecError(source, where + pointer(*first["loc"]), first["msg"]) from None
        check_schema(tool.parameters, source=source, where=f"{where}/parameters")
        if tool.output_schema is not None:
            check_schema(tool.output_schema, source=source, where=f"{where}/output_schema")
        return tool
    raise AssertionError(kind)


def function_list_tools(items: list[Any], *, source: str, base: str = "") -> list[tuple[Tool, str]]:
    """Tools of a list of function descriptions in any of the supported shapes."""
    tools: list[tuple[Tool, str]] = []
    for index, item in enumerate(items):
        where = f"{base}/{index}"
        kind = item_kind(item)
        if kind is None:
            raise SpecError(
                source,
                where,
                "not a function description (expected an OpenAI tool, "
                "a function object with name/parameters, a BFCL doc or an MCP tool)",
            )
        tools.append((function_tool(item, kind, source=source, where=where), where))
    return tools
