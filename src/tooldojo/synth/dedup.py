"""Near-duplicate requests: MinHash over word shingles (``datasketch``), checked as they arrive.

Two episodes whose opening requests are nearly the same text teach nothing new, and they
happen (two scenarios drawing the same example values from a spec). The filter sees every
request before the assistant runs, so a duplicate costs one user-simulator call, not a whole
episode. It is rebuilt from the trajectories already written when a run resumes.
"""

from __future__ import annotations

import re
from itertools import pairwise

from datasketch import MinHash, MinHashLSH


def shingles(text: str) -> set[str]:
    """Lowercase word unigrams and bigrams (requests are short: bigrams alone are too few)."""
    tokens = re.findall(r"[a-z0-9]+(?:[.,:'-][a-z0-9]+)*", text.lower())
    return set(tokens) | {f"{a} {b}" for a, b in pairwise(tokens)}


class NearDuplicateFilter:
    """Keeps the first of any group of requests whose estimated Jaccard ≥ ``threshold``."""

    def __init__(self, threshold: float = 0.9, num_perm: int = 64):
        self.threshold = threshold
        self.num_perm = num_perm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._seen: set[str] = set()
        self.dropped = 0

    def _signature(self, text: str) -> MinHash:
        signature = MinHash(num_perm=self.num_perm, seed=1)
        for shingle in sorted(shingles(text)) or [""]:
            signature.update(shingle.encode("utf-8"))
        return signature

    def check(self, key: str, text: str) -> str | None:
        """``None`` and remember ``text`` if it is new; else the key of its near-duplicate."""
        if key in self._seen:
            return None
        signature = self._signature(text)
        matches = self._lsh.query(signature)
        if matches:
            self.dropped += 1
            return str(sorted(matches)[0])
        self._lsh.insert(key, signature)
        self._seen.add(key)
        return None

    def add(self, key: str, text: str) -> None:
        """Remember ``text`` unconditionally (requests of episodes already written)."""
        if key not in self._seen:
            self._lsh.insert(key, self._signature(text))
            self._seen.add(key)
