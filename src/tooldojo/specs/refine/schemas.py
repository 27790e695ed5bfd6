"""Check a kept tool's schemas exactly as the MCP server will, once, at refinement time.

The server (``tooldojo.mcp.registry``) checks every schema against the 2020-12 meta-schema
*with format checking*, so a ``pattern`` that Python's ``re`` cannot compile (ECMA's
``\\p{L}``, common in AWS specs) fails there. Such patterns are removed here (the tool stays,
its value is simply unconstrained by that pattern) and the schemas are then checked the same
way; tools that pass carry ``metadata["schema_checked"]`` so loading or serving a refined
registry of 50k tools need not repeat the ~5 ms-per-tool check.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA_CHECKED = "2020-12+formats"
"""The value of ``metadata["schema_checked"]`` for schemas checked as the server would."""

_META = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def _compiles(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def drop_bad_patterns(schema: Any) -> tuple[Any, int]:
    """``schema`` without ``pattern``s Python cannot compile (copied where changed), and
    how many were removed. ``patternProperties`` keys are treated the same way."""
    if isinstance(schema, list):
        items = [drop_bad_patterns(item) for item in schema]
        return [i for i, _ in items], sum(n for _, n in items)
    if not isinstance(schema, dict):
        return schema, 0
    removed = 0
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and not _compiles(value):
            removed += 1
            continue
        if key == "patternProperties" and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if _compiles(k)}
            removed += len(value) - len(kept)
            value = kept
        if key in ("properties", "$defs", "patternProperties", "dependentSchemas") and isinstance(
            value, dict
        ):
            fixed = {}
            for name, sub in value.items():
                fixed[name], n = drop_bad_patterns(sub)
                removed += n
            out[key] = fixed
        elif key in ("enum", "const", "examples", "default", "required"):
            out[key] = value
        else:
            out[key], n = drop_bad_patterns(value)
            removed += n
    return out, removed


def server_valid(schema: Any) -> bool:
    """Whether the MCP server's check (2020-12 meta-schema, formats checked) accepts it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return best_match(_META.iter_errors(schema)) is None
