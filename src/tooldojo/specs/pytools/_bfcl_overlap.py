"""Keep BFCL's functions out of the library: BFCL is the test set (``math.gcd``,
``math.factorial`` and ``math.hypot`` are BFCL questions' functions).

A library tool whose normalized name (``math_gcd``, ``math.gcd`` → ``mathgcd``) is the name
of a function BFCL documents is dropped, whatever its description: the model must not
practise the exact names it is tested on. When the content guard (``tooldojo.bfcl_guard``)
is installed, its verdict (same name with alike docs, or nearly the same docs under any name)
drops a tool too.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from tooldojo.model import Tool


def normalize_name(name: str) -> str:
    """``math.factorial``, ``math_factorial`` and ``MathFactorial`` all become ``mathfactorial``
    (the same rule as the BFCL content guard)."""
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", name).casefold())


@functools.lru_cache(maxsize=1)
def bfcl_function_names() -> frozenset[str] | None:
    """Normalized names of every function BFCL documents; None when bfcl-eval is absent."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    names: set[str] = set()
    for path in [*data.glob("*.json"), *(data / "multi_turn_func_doc").glob("*.json")]:
        for entry in _entries(path.read_text(encoding="utf-8")):
            functions = entry.get("function", [entry]) if isinstance(entry, dict) else []
            for function in functions if isinstance(functions, list) else []:
                if isinstance(function, dict) and isinstance(function.get("name"), str):
                    names.add(normalize_name(function["name"]))
    return frozenset(names)


def _entries(text: str) -> list[Any]:
    """BFCL's files are JSON Lines under .json names, except a few plain JSON documents."""
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        document = json.loads(text)
        return document if isinstance(document, list) else [document]


def content_guard() -> Any | None:
    """The BFCL content guard when this installation has it (branch ``reliab``), else None."""
    try:
        from tooldojo.bfcl_guard import BfclGuard  # type: ignore[import-not-found]
    except ImportError:
        return None
    return BfclGuard.load()


def overlap(tool: Tool, names: frozenset[str], guard: Any | None) -> str | None:
    """Why ``tool`` overlaps BFCL, or None."""
    for name in (tool.name, tool.original_name or ""):
        if name and normalize_name(name) in names:
            return f"BFCL documents a function named like {name!r}"
    if guard is not None:
        hit = guard.tool_hit(tool)
        if hit is not None:
            return str(hit)
    return None
