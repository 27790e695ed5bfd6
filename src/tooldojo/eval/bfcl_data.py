"""BFCL's test data, read from the installed ``bfcl-eval`` package with BFCL's own loaders.

BFCL is TEST DATA ONLY: nothing loaded here may flow into synthesis or training.

Two views of every entry exist, as in BFCL itself: the *inference* view (function docs with
BFCL's language hints, e.g. "Note that the provided function is in Python 3 syntax.", which is
what BFCL's generation step shows a model) and the *scoring* view (the plain docs BFCL's
evaluation step hands to its checkers). Multi-turn entries get their function docs from the
environment classes, with the held-out functions of ``miss_func`` removed, by BFCL's loader.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any

from tooldojo.errors import ToolDojoError

NON_LIVE = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
)
LIVE = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
MULTI_TURN = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
CATEGORIES: tuple[str, ...] = NON_LIVE + LIVE + MULTI_TURN
"""Every category this harness runs (BFCL v4's scoring categories minus the agentic ones)."""

GROUPS: dict[str, tuple[str, ...]] = {
    "all": CATEGORIES,
    "non_live": NON_LIVE,
    "live": LIVE,
    "multi_turn": MULTI_TURN,
    "single_turn": NON_LIVE + LIVE,
    "ast": tuple(c for c in NON_LIVE + LIVE if "relevance" not in c),
    "python": tuple(c for c in NON_LIVE + LIVE if c not in ("simple_java", "simple_javascript")),
}
"""Shorthands accepted by ``--categories`` (a subset of BFCL's own collection names)."""


@dataclass
class BFCLEntry:
    """One BFCL test entry in both views, with its ground truth (``None`` for relevance)."""

    id: str
    category: str
    inference: dict[str, Any]
    scoring: dict[str, Any]
    ground_truth: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_multi_turn(self) -> bool:
        return self.category.startswith("multi_turn")

    @property
    def is_relevance(self) -> bool:
        return "relevance" in self.category

    @property
    def language(self) -> str:
        if self.category == "simple_java":
            return "Java"
        if self.category == "simple_javascript":
            return "JavaScript"
        return "Python"


def expand_categories(names: list[str] | None) -> list[str]:
    """Category names and group shorthands → categories in BFCL's order, without repeats."""
    if not names:
        return list(CATEGORIES)
    chosen: set[str] = set()
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name in GROUPS:
                chosen.update(GROUPS[name])
            elif name in CATEGORIES:
                chosen.add(name)
            else:
                known = ", ".join([*GROUPS, *CATEGORIES])
                raise ToolDojoError(f"unknown BFCL category {name!r}; choose from: {known}")
    return [category for category in CATEGORIES if category in chosen]


def _bfcl_utils() -> Any:
    try:
        from bfcl_eval import utils
    except ImportError as error:
        raise ToolDojoError(
            f"bfcl-eval is not usable ({error}): run `pip install --no-deps bfcl-eval==2026.3.23`"
            " plus the checker packages listed in pyproject.toml"
        ) from None
    return utils


@functools.cache  # the installed data does not change under a process: ~1 s per summary saved
def dataset_size(category: str) -> int:
    """Number of entries BFCL ships for ``category``."""
    return len(_bfcl_utils().load_dataset_entry(category, include_prereq=False))


def sample_ids(ids: list[str], category: str, limit: int | None, seed: int) -> set[str]:
    """A deterministic sample of ``limit`` ids per category (all of them when ``None``).

    Seeded by ``seed`` and the category name, so the same command always picks the same
    entries and adding a category never changes another category's sample.
    """
    if limit is None or limit >= len(ids):
        return set(ids)
    if limit < 1:
        raise ToolDojoError("--limit must be at least 1")
    return set(random.Random(f"{seed}:{category}").sample(sorted(ids), limit))


def load_category(category: str, *, limit: int | None = None, seed: int = 0) -> list[BFCLEntry]:
    """The entries of ``category`` (sampled by :func:`sample_ids`), in BFCL's order."""
    if category not in CATEGORIES:
        raise ToolDojoError(f"unknown BFCL category {category!r}")
    utils = _bfcl_utils()
    inference = utils.load_dataset_entry(
        category, include_prereq=False, include_language_specific_hint=True
    )
    scoring = utils.load_dataset_entry(
        category, include_prereq=False, include_language_specific_hint=False
    )
    answers: list[dict[str, Any]] | None = None
    if "relevance" not in category:
        answers = utils.load_ground_truth_entry(category)
        if len(answers) != len(scoring):
            raise ToolDojoError(
                f"bfcl-eval data of {category}: {len(scoring)} entries but {len(answers)} answers"
            )
    keep = sample_ids([entry["id"] for entry in scoring], category, limit, seed)
    entries = []
    # BFCL aligns prompts and answers by position (some answer ids are spelled differently).
    for index, (shown, scored) in enumerate(zip(inference, scoring, strict=True)):
        if scored["id"] not in keep:
            continue
        entries.append(
            BFCLEntry(
                id=scored["id"],
                category=category,
                inference=shown,
                scoring=scored,
                ground_truth=answers[index]["ground_truth"] if answers is not None else None,
            )
        )
    return entries
