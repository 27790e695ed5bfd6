"""Near-duplicate merge: one representative per group of tools with the same purpose.

APIs.guru holds many near-copies (regional variants, API versions, white-labelled vendors).
Training on twenty copies of one tool teaches nothing new, so tools whose word sets over
name, description and parameter names are near-identical (MinHash Jaccard over word
shingles, found with LSH from ``datasketch`` rather than an O(n²) comparison) *and* whose
parameter names are the same are merged into the first one seen (input order is
deterministic), which records how many it stands for.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from datasketch import MinHash, MinHashLSH

from tooldojo.specs.refine.domains import tool_words

NUM_PERM = 64
DEFAULT_THRESHOLD = 0.85


def shingles(tool: dict[str, Any]) -> set[bytes]:
    """Words and word pairs: pairs keep "get user" apart from "user get" lists."""
    words = tool_words(tool)
    grams = set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}
    return {g.encode() for g in grams}


def _param_key(tool: dict[str, Any]) -> frozenset[str]:
    return frozenset((tool.get("parameters") or {}).get("properties", {}) or {})


def merge_near_duplicates(
    tools: Sequence[dict[str, Any]], threshold: float = DEFAULT_THRESHOLD
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The representatives (in input order) and ``{merged name: representative name}``.

    Names here are the records' ``name`` keys; the caller makes them unique first.
    """
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    # Permutations drawn once and shared: drawing them per MinHash dominated the stage.
    template = MinHash(num_perm=NUM_PERM, seed=1)
    permutations, scheme = template.permutations, template.scheme
    hashes: dict[str, MinHash] = {}
    params: dict[str, frozenset[str]] = {}
    kept: list[dict[str, Any]] = []
    merged_into: dict[str, str] = {}
    for tool in tools:
        grams = shingles(tool)
        minhash = MinHash(num_perm=NUM_PERM, seed=1, permutations=permutations, scheme=scheme)
        if grams:
            minhash.update_batch(list(grams))
        key = _param_key(tool)
        representative = None
        for candidate in sorted(lsh.query(minhash)):
            if params[candidate] == key and hashes[candidate].jaccard(minhash) >= threshold:
                representative = candidate
                break
        if representative is None:
            name = tool["name"]
            lsh.insert(name, minhash)
            hashes[name] = minhash
            params[name] = key
            kept.append(tool)
        else:
            merged_into[tool["name"]] = representative
    counts: dict[str, int] = {}
    for rep in merged_into.values():
        counts[rep] = counts.get(rep, 0) + 1
    for tool in kept:
        if tool["name"] in counts:
            tool["metadata"]["merged"] = counts[tool["name"]]
    return kept, merged_into


__all__ = ["merge_near_duplicates", "shingles"]
