"""Normalized tools → OpenAI ``tools``, BFCL function docs or an MCP ``tools/list`` result."""

from __future__ import annotations

from typing import Any

from tooldojo.model import Tool
from tooldojo.specs._schema import json_schema_to_bfcl

EXPORT_FORMATS = ("openai", "bfcl", "mcp")


def to_bfcl(tool: Tool) -> dict[str, Any]:
    """BFCL's doc shape; the original (possibly dotted) name is what BFCL-style models expect."""
    return {
        "name": tool.original_name or tool.name,
        "description": tool.description,
        "parameters": json_schema_to_bfcl(tool.parameters),
    }


def to_mcp(tool: Tool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.parameters,
    }
    # MCP requires an object output schema; others stay undeclared rather than wrong.
    if tool.output_schema and tool.output_schema.get("type") == "object":
        entry["outputSchema"] = tool.output_schema
    for key in ("title", "annotations"):
        if key in tool.metadata:
            entry[key] = tool.metadata[key]
    return entry


def export_tools(tools: list[Tool], fmt: str) -> Any:
    """The JSON document of ``tools`` in format ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    if fmt == "openai":
        return [tool.to_openai() for tool in tools]
    if fmt == "bfcl":
        return [to_bfcl(tool) for tool in tools]
    if fmt == "mcp":
        return {"tools": [to_mcp(tool) for tool in tools]}
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
