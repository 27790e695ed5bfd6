"""Rates with their count and a 95% Wilson interval.

Every percentage the report shows comes from a :class:`Rate`, so none can appear without
its n: the whole point is that "66.7%" on 3 entries reads very differently from 66.7% on
400. Wilson rather than the normal approximation because our n are often tiny and our
rates often 0 or 1, where the normal interval collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054
"""The standard normal quantile for a two-sided 95% interval."""


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials, as fractions."""
    if n <= 0:
        raise ValueError("a rate needs at least one trial")
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials")
    p = k / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At k = 0 and k = n the bounds are exactly 0 and 1; rounding would otherwise show 99.99...
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n``: the share, its interval and a label that always carries n."""

    k: int
    n: int

    def __post_init__(self) -> None:
        wilson_interval(self.k, self.n)  # validates k and n once, at construction

    @property
    def share(self) -> float:
        return self.k / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    @property
    def percent(self) -> str:
        return f"{100 * self.share:.1f}%"

    @property
    def detail(self) -> str:
        """``2/3, 95% CI 20.8–93.9`` (interval in percent)."""
        low, high = self.interval
        return f"{self.k}/{self.n}, 95% CI {100 * low:.1f}–{100 * high:.1f}"

    def __str__(self) -> str:
        return f"{self.percent} ({self.detail})"

    def to_json(self) -> dict[str, float | int]:
        low, high = self.interval
        return {"k": self.k, "n": self.n, "share": self.share, "low": low, "high": high}


def rate_or_none(k: int, n: int) -> Rate | None:
    """A rate, or ``None`` when nothing was counted (an empty cell, never a fake 0%)."""
    return Rate(k, n) if n > 0 else None
