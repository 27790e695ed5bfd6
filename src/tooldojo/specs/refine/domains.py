"""A domain for every tool: the spec's own category, else the nearest category by vocabulary.

APIs.guru files most specs under ``info.x-apisguru-categories``; we take the first one.
Tools whose spec has none (and sources without a domain) join the category whose centroid
is closest in word space (TF-IDF cosine over name, description and parameter words, the
same tokens :mod:`tooldojo.synth.similarity` uses): a nearest-centroid clustering seeded by
the categorized tools. That keeps the domain list to names a reader knows; a tool sharing no
vocabulary with any category lands in ``other``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

UNCLUSTERED = "other"
MIN_SIMILARITY = 0.05


def spec_category(info: dict[str, Any]) -> str | None:
    """The first ``x-apisguru-categories`` entry (a lone string is accepted too)."""
    raw = info.get("x-apisguru-categories")
    if isinstance(raw, str):
        raw = [raw]
    if (
        isinstance(raw, list)
        and len(raw) > 1
        and all(isinstance(e, str) and len(e) == 1 for e in raw)
    ):
        raw = ["".join(raw)]  # a string split into letters in the source data (threatjammer.com)
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, str) and entry.strip():
                return re.sub(r"[^a-z0-9_]+", "_", entry.strip().lower())
    return None


_WORD = re.compile(r"[a-z][a-z0-9]+")


def tool_words(tool: dict[str, Any]) -> list[str]:
    """Words of a tool record's name, description and parameter names (camelCase split)."""
    params = " ".join((tool.get("parameters") or {}).get("properties", {}) or {})
    text = f"{tool.get('original_name') or tool['name']} {tool.get('description', '')} {params}"
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text).lower()
    return _WORD.findall(spaced)


def assign_clusters(tools: Sequence[dict[str, Any]]) -> int:
    """Give every tool record without ``metadata["domain"]`` the nearest category; returns
    how many were assigned. Records are changed in place (``domain_from = "cluster"``)."""
    missing = [t for t in tools if not t["metadata"].get("domain")]
    if not missing:
        return 0
    bags = [Counter(tool_words(t)) for t in tools]
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag.keys())
    total = len(tools)
    idf = {w: math.log((1 + total) / (1 + n)) for w, n in df.items()}
    centroids: dict[str, Counter[str]] = defaultdict(Counter)
    for tool, bag in zip(tools, bags, strict=True):
        domain = tool["metadata"].get("domain")
        if domain:
            centroids[domain].update({w: (1 + math.log(n)) * idf[w] for w, n in bag.items()})
    normed = {d: _normalize(c) for d, c in centroids.items()}
    index = {id(t): i for i, t in enumerate(tools)}
    for tool in missing:
        bag = bags[index[id(tool)]]
        vector = _normalize({w: (1 + math.log(n)) * idf[w] for w, n in bag.items()})
        best, best_score = UNCLUSTERED, MIN_SIMILARITY
        for domain, centroid in normed.items():
            score = sum(v * centroid.get(w, 0.0) for w, v in vector.items())
            if score > best_score:
                best, best_score = domain, score
        tool["metadata"]["domain"] = best
        tool["metadata"]["domain_from"] = "cluster"
    return len(missing)


def _normalize(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
    return {w: v / norm for w, v in vector.items()}
