"""Spec ingestion: OpenAPI 3.0/3.1, OpenAI tools, BFCL function docs, MCP tools/list, live MCP.

Everything becomes a list of uniquely named :class:`~tooldojo.model.Tool` whose
``parameters`` validate against their JSON Schema meta-schema.
"""

from tooldojo.specs._schema import sanitize_name
from tooldojo.specs.export import EXPORT_FORMATS, export_tools, to_bfcl, to_mcp
from tooldojo.specs.loader import DEFAULT_MAX_BYTES, load_tools, read_document, tools_from_document
from tooldojo.specs.openapi import convert_openapi

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EXPORT_FORMATS",
    "convert_openapi",
    "export_tools",
    "load_tools",
    "read_document",
    "sanitize_name",
    "to_bfcl",
    "to_mcp",
    "tools_from_document",
]
