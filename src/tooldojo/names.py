"""How a tool's or parameter's name reads: its words, and a key to compare names by.

Planning (values by name), refinement (the tool graph) and verification (error fields of a
result) all read names; stages may not import each other, so the one splitter lives here.
"""

from __future__ import annotations

import re


def name_words(name: str) -> list[str]:
    """``resourceGroupName`` → ``["resource", "group", "name"]`` (camelCase, snake and kebab)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def alnum_key(text: str) -> str:
    """``photo_ID`` → ``photoid``: a name or value compared without case or separators."""
    return re.sub(r"[^a-z0-9]", "", text.lower())
