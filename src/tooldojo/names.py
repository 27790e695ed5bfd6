"""How a tool's or parameter's name reads: its words, and a key to compare names by.

Planning (values by name), refinement (the tool graph), the simulated server (the shape of a
success) and verification (error fields of a result) all read names; stages may not import
each other, so the one splitter and the words of a result's status fields live here.
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


ERROR_WORDS = frozenset({"error", "errors", "exception", "fault", "faults"})
"""Words of a result field that carries a failure when it has content."""
FAILED_FLAG_WORDS = frozenset({"error", "errors", "failed", "faulted", "failure"})
"""Words of a boolean field that reports a failure when true ({"isFaulted": true})."""
SUCCESS_FLAG_WORDS = frozenset({"success", "succeeded", "successful", "ok"})
"""Words of a boolean field that reports a failure when false ({"success": false})."""
FLAG_PREFIXES = frozenset({"is", "has", "was", "did"})
NOT_A_REPORT = frozenset(
    {"count", "counts", "total", "number", "num", "rate", "ratio", "percent", "threshold",
     "limit", "max", "min", "override", "enabled", "allowed", "policy", "mode", "type", "types"}
)  # fmt: skip
"""Words of a field that counts or configures errors ("errorCount", "maxErrors",
"errorPolicy"): a value there is not a failure of this call."""


def reports_error(key: str) -> bool:
    """Whether a result field named ``key`` reports a failure when it has content
    (``error``, ``WebException``, ``ErrorMessages``; not ``errorCount`` or ``maxErrors``)."""
    words = set(name_words(key))
    return bool(words & ERROR_WORDS) and not words & NOT_A_REPORT


def status_flag(key: str) -> str | None:
    """``"failed"`` for a boolean field that is true on a failure (``isFaulted``, ``error``),
    ``"success"`` for one that is true on a success (``success``, ``ok``), else ``None``
    (a setting that names an error, ``activeErrorOverride``, is neither)."""
    state = set(name_words(key)) - FLAG_PREFIXES
    if state and state <= FAILED_FLAG_WORDS:
        return "failed"
    if state and state <= SUCCESS_FLAG_WORDS:
        return "success"
    return None
