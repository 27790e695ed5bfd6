"""Which tools belong together: lexical similarity of names and descriptions.

No embedding model can be downloaded where tooldojo must run offline, so relatedness is
TF-IDF cosine over word tokens of a tool's name (camelCase and snake_case split), its
description and its parameter names, plus a bonus for tools of the same source spec. That is
enough to keep weather tools with weather tools, to pick hard distractors (similar but
wrong) for ``multiple`` scenarios and clearly unrelated tools for ``irrelevance``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from tooldojo.model import Tool

SAME_SOURCE_BONUS = 0.25

_STOPWORD_TEXT = (
    "a an and are as at be by for from in into is it its of on or that the this to with "
    "e g eg optional required default given one two use used using when which will"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def tokens(text: str) -> list[str]:
    """Lowercase word tokens; camelCase and snake_case are split, stopwords dropped."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text or "")
    words = re.split(r"[^A-Za-z0-9]+", spaced.lower())
    return [w for w in words if len(w) > 1 and w not in _STOPWORDS and not w.isdigit()]


def tool_tokens(tool: Tool) -> list[str]:
    """Name tokens count twice: a name is the densest statement of what a tool does."""
    name = tokens(tool.original_name or tool.name)
    return name * 2 + tokens(tool.description) + tokens(" ".join(tool.properties))


class ToolSimilarity:
    """Pairwise relatedness of a fixed tool set, computed once (tool sets are small)."""

    def __init__(self, tools: Sequence[Tool]):
        self.tools = list(tools)
        self.index = {tool.name: i for i, tool in enumerate(self.tools)}
        bags = [Counter(tool_tokens(tool)) for tool in self.tools]
        document_frequency: Counter[str] = Counter()
        for bag in bags:
            document_frequency.update(bag.keys())
        count = max(len(bags), 1)
        vectors = []
        for bag in bags:
            vector = {
                word: (1 + math.log(n)) * math.log((1 + count) / (1 + document_frequency[word]))
                for word, n in bag.items()
            }
            norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
            vectors.append({word: v / norm for word, v in vector.items()})
        self._vectors = vectors

    def cosine(self, a: str, b: str) -> float:
        """Lexical cosine similarity in [0, 1] of two tools (by name)."""
        va, vb = self._vectors[self.index[a]], self._vectors[self.index[b]]
        if len(va) > len(vb):
            va, vb = vb, va
        return sum(weight * vb.get(word, 0.0) for word, weight in va.items())

    def score(self, a: str, b: str) -> float:
        """Relatedness: cosine plus a bonus when both come from the same spec."""
        same = self.tools[self.index[a]].source == self.tools[self.index[b]].source
        return self.cosine(a, b) + (SAME_SOURCE_BONUS if same else 0.0)

    def related(self, name: str, candidates: Sequence[str] | None = None) -> list[str]:
        """Other tools ranked from most to least related to ``name``."""
        pool = [n for n in (candidates or self.index) if n != name]
        return sorted(pool, key=lambda other: (-self.score(name, other), other))

    def unrelated(self, name: str, threshold: float = 0.05) -> list[str]:
        """Tools whose cosine with ``name`` is at most ``threshold`` (no shared vocabulary)."""
        return [
            other.name
            for other in self.tools
            if other.name != name and self.cosine(name, other.name) <= threshold
        ]
