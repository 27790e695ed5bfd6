"""Bounded looks into raw OpenAPI schemas, before (or instead of) full ``$ref`` inlining.

The project's converter inlines every non-recursive ``$ref`` completely, which is right for a
tool's parameters but explodes on API families whose entities all reference each other
(Microsoft Graph: one response inlines to megabytes). Refinement needs two cheaper things:
whether a request schema is small enough to keep at all (:func:`too_big`, a walk that stops at
a node budget), and a response schema a reader and the tool graph can use
(:func:`shallow_schema`: two object levels, deeper objects left as ``{"type": "object"}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Lookup = Callable[[str, str], Any]

SCHEMA_NODE_BUDGET = 400
"""Schema objects a kept tool's parameters may hold (the 6,000-character cap is ~250)."""


def too_big(node: Any, lookup: Lookup, budget: int = SCHEMA_NODE_BUDGET) -> bool:
    """Whether ``node`` with its ``$ref``s followed has more than ``budget`` schema objects."""
    count = 0
    stack: list[tuple[Any, frozenset[str]]] = [(node, frozenset())]
    while stack:
        current, seen = stack.pop()
        if isinstance(current, list):
            stack.extend((item, seen) for item in current)
            continue
        if not isinstance(current, dict):
            continue
        ref = current.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                continue  # recursive: the converter keeps it once in $defs
            try:
                target = lookup(ref, "")
            except Exception:
                continue
            stack.append((target, seen | {ref}))
            continue
        count += 1
        if count > budget:
            return True
        for key, value in current.items():
            if key in ("example", "examples", "enum", "description", "default"):
                continue
            if isinstance(value, (dict, list)):
                stack.append((value, seen))
    return False


def shallow_schema(
    node: Any, lookup: Lookup, depth: int = 2, seen: frozenset[str] = frozenset()
) -> Any:
    """A response schema cut to ``depth`` object levels (arrays do not count as a level)."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen:
            return {"type": "object"}
        seen = seen | {ref}
        try:
            node = lookup(ref, "")
        except Exception:
            return {"type": "object"}
    if not isinstance(node, dict):
        return {}
    out = _valid_keywords(node)
    members = [m for key in ("allOf",) for m in node.get(key) or []]
    props: dict[str, Any] = {}
    for member in members:
        merged = shallow_schema(member, lookup, depth, seen)
        if isinstance(merged, dict):
            props.update(merged.get("properties") or {})
            if "type" in merged:
                out.setdefault("type", merged["type"])
    if isinstance(node.get("items"), (dict,)):
        out["items"] = shallow_schema(node["items"], lookup, depth, seen)
        out.setdefault("type", "array")
    if isinstance(node.get("properties"), dict):
        if depth <= 0:
            return {"type": "object"}
        for name, sub in node["properties"].items():
            props[name] = shallow_schema(sub, lookup, depth - 1, seen)
    if props:
        out["properties"] = props
        out.setdefault("type", "object")
    return out


_TYPES = {"string", "integer", "number", "boolean", "object", "array", "null"}


def _valid_keywords(node: dict[str, Any]) -> dict[str, Any]:
    """The kept keywords, each only in a form the 2020-12 meta-schema accepts, so the result
    is valid by construction (checking thousands of response schemas costs minutes)."""
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, str) and kind in _TYPES:
        out["type"] = kind
    elif isinstance(kind, list) and kind and all(k in _TYPES for k in kind):
        out["type"] = list(dict.fromkeys(kind))
    for key in ("format", "title"):
        if isinstance(node.get(key), str):
            out[key] = node[key]
    description = node.get("description")
    if isinstance(description, str):
        out["description"] = description if len(description) <= 160 else description[:157] + "..."
    if isinstance(node.get("enum"), list) and node["enum"]:
        out["enum"] = node["enum"]
    return out
