"""Shared pieces of ingestion: meta-schema checks, name sanitizing, BFCL type mapping."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import best_match

from tooldojo.errors import SpecError
from tooldojo.model import TOOL_NAME_PATTERN, Tool

# One validator per meta-schema, built once: `check_schema` would rebuild it per call,
# which dominates the time of ingesting thousands of operations.
_META_VALIDATORS = {
    "2020-12": Draft202012Validator(Draft202012Validator.META_SCHEMA),
    "draft-07": Draft7Validator(Draft7Validator.META_SCHEMA),
}


def check_schema(schema: Any, *, source: str, where: str, dialect: str = "2020-12") -> None:
    """Raise :class:`SpecError` if ``schema`` is not valid under its dialect's meta-schema."""
    error = best_match(_META_VALIDATORS[dialect].iter_errors(schema))
    if error is not None:
        inner = "".join(f"/{_escape(part)}" for part in error.absolute_path)
        raise SpecError(
            source, f"{where}{inner}", f"invalid JSON Schema ({dialect}): {error.message}"
        )


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(*parts: Any) -> str:
    """A JSON pointer from path parts, escaped per RFC 6901."""
    return "".join(f"/{_escape(part)}" for part in parts)


# A run of invalid characters, with the underscores around it, becomes one underscore.
_INVALID_NAME_CHARS = re.compile(r"_*[^a-zA-Z0-9_-]+_*")


def sanitize_name(raw: str) -> str:
    """Map any name onto ``^[a-zA-Z0-9_-]{1,64}$`` deterministically.

    Invalid runs become ``_``; names longer than 64 keep a readable prefix plus a short
    hash of the full original, so two long names that share a prefix stay distinct.
    """
    name = _INVALID_NAME_CHARS.sub("_", raw).strip("_") or "tool"
    if len(name) > 64:
        digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
        name = f"{name[:55].rstrip('_')}_{digest}"
    assert TOOL_NAME_PATTERN.match(name), name
    return name


def ensure_unique(tools: list[Tool], places: list[tuple[str, str]]) -> None:
    """Reject two tools that end up with the same name (after sanitizing or across files)."""
    seen: dict[str, int] = {}
    for index, tool in enumerate(tools):
        if tool.name in seen:
            first = seen[tool.name]
            source, where = places[index]
            other_source, other_where = places[first]
            raise SpecError(
                source,
                where,
                f"duplicate tool name {tool.name!r} "
                f"(from {tool.original_name or tool.name!r}; also defined at "
                f"{other_source} {other_where} from {tools[first].original_name or tool.name!r})",
            )
        seen[tool.name] = index


# BFCL's function docs use Python-flavoured type names.
_BFCL_TO_JSON = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "integer": "integer",
    "int": "integer",
    "string": "string",
    "str": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "number": "number",
    "object": "object",
    "null": "null",
}


def bfcl_to_json_schema(schema: Any, *, source: str, where: str) -> Any:
    """Translate a BFCL parameter schema to JSON Schema (``any`` drops the type constraint)."""
    if isinstance(schema, list):
        return [
            bfcl_to_json_schema(item, source=source, where=f"{where}/{i}")
            for i, item in enumerate(schema)
        ]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        here = f"{where}/{_escape(key)}"
        if key == "type":
            if value == "any":
                continue
            if not isinstance(value, str) or value not in _BFCL_TO_JSON:
                raise SpecError(source, here, f"unknown BFCL type {value!r}")
            out["type"] = _BFCL_TO_JSON[value]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {
                name: bfcl_to_json_schema(sub, source=source, where=f"{here}/{_escape(name)}")
                for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = bfcl_to_json_schema(value, source=source, where=here)
        else:
            out[key] = value
    return out


_JSON_TO_BFCL = {"object": "dict", "number": "float"}


def json_schema_to_bfcl(schema: dict[str, Any]) -> dict[str, Any]:
    """The inverse mapping, for export; ``$ref``s inlined a few levels deep (BFCL has none)."""
    converted = _to_bfcl(schema, schema.get("$defs", {}), 0)
    converted.setdefault("type", "dict")
    return converted


def _to_bfcl(schema: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = schema["$ref"].rsplit("/", 1)[-1]
        if depth > 3 or target not in defs:
            return {"type": "dict", "properties": {}}
        return _to_bfcl(defs[target], defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$defs", "$schema", "additionalProperties"):
            continue
        if key == "type":
            if isinstance(value, list):
                non_null = [t for t in value if t != "null"]
                value = non_null[0] if len(non_null) == 1 else "any"
            out["type"] = _JSON_TO_BFCL.get(value, value)
        elif key == "properties":
            out[key] = {name: _to_bfcl(sub, defs, depth) for name, sub in value.items()}
        elif key == "items":
            out[key] = _to_bfcl(value, defs, depth)
        else:
            out[key] = value
    if "type" not in out and not any(k in out for k in ("anyOf", "oneOf", "allOf")):
        out["type"] = "any"
    return out
