"""Sample arguments for a tool, derived from its schema, so every kept tool is known callable.

A few argument sets are tried in turn (numbers 0.5, then 2.0, then 1.5 ...), because a
valid function may reject one plain value (``math.acosh(0.5)``); the tool is kept when one
set gives a JSON result that is not empty and not NaN.
"""

from __future__ import annotations

from typing import Any

VARIANTS = 3

_NAMED_STRINGS = {
    "chr": "a",
    "unistr": "café",
    "form": "NFC",
    "key": "electron mass",
    "name": "LATIN SMALL LETTER A",
    "old_scale": "Celsius",
    "new_scale": "Kelvin",
    "prefix": "> ",
    "sep": ", ",
    "fillchar": "*",
    "placeholder": " [...]",
}
_NAMED_INTEGERS = {
    "year": 2024,
    "theyear": 2024,
    "month": 6,
    "themonth": 6,
    "day": 15,
    "week": 10,
    "hour": 12,
    "minute": 30,
    "width": 20,
    "y1": 2000,
    "y2": 2024,
    "ordinal": 739000,
}
_VARIANT_INTEGERS = {"day": (15, 3, 1)}
_VARIANT_STRINGS = {"chr": ("a", "7", "½"), "format": ("%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d")}
_PROBABILITIES = ("p", "q", "prob", "probability", "pk")
_TEXTS = ("The quick brown fox jumps over the lazy dog. It was not amused.", "hello", "a")
_NUMBERS = (0.5, 2.0, 1.5)
_INTEGERS = (3, 2, 1)
_NUMBER_LISTS = ([1.0, 2.0, 3.5, 4.0, 6.0], [0.2, 0.4, 0.6, 0.1], [2.0, 3.0])
_INTEGER_LISTS = ([12, 18, 30], [4, 6, 8, 1], [1, 2])
_MATRICES = ([[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 1.0]], [[4.0, 2.0], [2.0, 5.0]])
_STRING_LISTS = (["apple", "banana", "cherry"], ["a", "b"], ["x"])


def sample_arguments(schema: dict[str, Any], variant: int) -> dict[str, Any]:
    """Values for the required parameters of ``schema`` (optional ones keep their defaults)."""
    properties = schema.get("properties", {})
    return {
        name: sample_value(name, properties[name], variant)
        for name in schema.get("required", [])
        if name in properties
    }


def sample_value(name: str, schema: dict[str, Any], variant: int) -> Any:
    """A plain value ``schema`` accepts; ``variant`` picks another one of the same kind."""
    if "enum" in schema:
        return schema["enum"][variant % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "integer":
        value = _VARIANT_INTEGERS.get(name, (_NAMED_INTEGERS.get(name, _INTEGERS[variant]),) * 3)[
            variant
        ]
        return max(schema.get("minimum", value), min(schema.get("maximum", value), value))
    if kind == "number":
        if name in _PROBABILITIES:
            return (0.3, 0.7, 0.5)[variant]
        return _NUMBERS[variant]
    if kind == "boolean":
        return variant == 1
    if kind == "string":
        if "date" in name:
            return "2024-06-15"
        if name in _VARIANT_STRINGS:
            return _VARIANT_STRINGS[name][variant]
        return _NAMED_STRINGS.get(name, _TEXTS[variant])
    if kind == "array":
        items = schema.get("items", {})
        if items.get("type") == "array":
            return _MATRICES[variant]
        if items.get("type") == "integer":
            return list(_INTEGER_LISTS[variant])
        if items.get("type") == "string":
            return list(_STRING_LISTS[variant])
        if items.get("type") == "boolean":
            return [True, False, True, True, False][: 5 - variant]
        return list(_NUMBER_LISTS[variant])
    return None


def is_useful(result: Any) -> str | None:
    """Why a probe result does not show the tool working, or None when it does."""
    if result is None:
        return "no_result"
    if result in ("nan", "inf", "-inf") or result == {"real": "nan", "imag": "nan"}:
        return "nan_result"
    if isinstance(result, list) and result and all(item == "nan" for item in result):
        return "nan_result"
    return None
