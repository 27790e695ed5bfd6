"""Data a reader can look at: sampled trajectories, why gates failed, how the probe erred.

A data engine is judged by its data, so each iteration's section shows real records, each
chosen reproducibly (a seeded sample, or the first example of a group in file order).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.model import Verdict
from tooldojo.report.stats import Rate

TOP_REASONS = 5
"""Failure reasons shown per gate (the rest are counted under "other")."""

EXAMPLE_CHARS = 400
"""Longest reason or request text shown in one example (the full record is in the run)."""

_WHERE = re.compile(r"^turn \d+( call \d+ \([^)]*\))?: ")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")  # with \' escapes (repr)
_NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class ReasonGroup:
    """One kind of failure at one gate: how often, and the first trajectory that had it."""

    reason: str
    count: int
    example_id: str
    example: str


@dataclass(frozen=True)
class ProbeExample:
    """One probed turn as a reader needs it: what was asked, expected and answered."""

    id: str
    request: str
    label: str
    answer: str
    reason: str


@dataclass(frozen=True)
class ProbeErrorGroup:
    """One class of probe mistake, its share of that kind's probed turns, and an example."""

    error_class: str
    kind: str
    rate: Rate
    example: ProbeExample


def reason_class(reason: str) -> str:
    """A failure reason with its specifics (turn, quoted values, numbers) taken out.

    Gates write reasons like ``turn 1: unknown tool 'foo'``; grouping on the raw text would
    give one group per trajectory, so the first error is reduced to its shape.
    """
    first = reason.split("; ")[0]
    shape = _NUMBER.sub("N", _QUOTED.sub("'…'", _WHERE.sub("", first)))
    return shape[:100] or "(no reason given)"


def clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure_groups(verdict: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, example line) for each distinct reason of a failed verdict: its reason codes
    (:meth:`Verdict.failure_codes`) with the error line that gave each. Verdicts written
    before the gates gave codes are grouped by the shape of their reason instead, except the
    label gate's, whose lines carry BFCL's error types."""
    parsed = Verdict.model_validate(verdict)
    if not parsed.details.get("reasons") and parsed.gate != "label":
        return [(reason_class(parsed.reason), parsed.reason)]
    codes = parsed.failure_codes()
    lines = [str(error) for error in parsed.details.get("errors", [])]
    if len(lines) != len(codes):
        lines = [parsed.reason] * len(codes)
    first: dict[str, str] = {}
    for code, line in zip(codes, lines, strict=True):
        first.setdefault(code, line)
    return list(first.items())


def gate_failures(path: Path) -> dict[str, list[ReasonGroup]]:
    """The most frequent failure reasons of each gate (trajectories per reason code), with the
    first example of each."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for _, row in iter_jsonl_dicts(path):
        for verdict in row.get("verdicts", []):
            if verdict.get("passed"):
                continue
            gate = verdict["gate"]
            for group, line in _failure_groups(verdict):
                counts[gate][group] += 1
                first.setdefault((gate, group), (row.get("id", "?"), clip(line)))
    out: dict[str, list[ReasonGroup]] = {}
    for gate, shapes in counts.items():
        top = shapes.most_common(TOP_REASONS)
        groups = [ReasonGroup(s, n, *first[(gate, s)]) for s, n in top]
        rest = sum(shapes.values()) - sum(n for _, n in top)
        if rest:
            groups.append(ReasonGroup("(other reasons)", rest, "", ""))
        out[gate] = groups
    return out


def sample_passed(path: Path, size: int, seed: str) -> list[dict[str, Any]]:
    """A seeded uniform sample of the trajectories that passed verification (reservoir)."""
    rng = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    seen = 0
    for _, row in iter_jsonl_dicts(path):
        if not row.get("passed"):
            continue
        seen += 1
        if len(chosen) < size:
            chosen.append(row)
        elif (slot := rng.randrange(seen)) < size:
            chosen[slot] = row
    return sorted(chosen, key=lambda row: str(row.get("id", "")))


def format_call(name: str, arguments: dict[str, Any]) -> str:
    """``name(key=value, ...)`` with JSON values: how a call reads in BFCL's own syntax."""
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return f"{name}({args})"


def format_label(label: dict[str, Any]) -> str:
    """A label in words: its calls (each argument's acceptable values) or its kind."""
    kind = label.get("kind", "call")
    if kind == "call":
        return "\n".join(format_call(c["name"], c.get("arguments", {})) for c in label["calls"])
    if kind == "clarify" and label.get("missing"):
        return f"clarify: ask for {', '.join(label['missing'])}"
    return {"refuse": "no call (no offered tool fits)", "text": "a text answer"}.get(kind, kind)


def format_answer(row: dict[str, Any]) -> str:
    calls = [format_call(c["name"], c.get("arguments", {})) for c in row.get("calls", [])]
    text = (row.get("text") or "").strip()
    return "\n".join([*calls, *([f"text: {clip(text)}"] if text else [])]) or "(empty answer)"


def _request(trajectory: dict[str, Any], turn: int) -> str:
    """The last user message before the ``turn``-th assistant message."""
    last_user, assistants = "", 0
    for message in trajectory.get("messages", []):
        if message.get("role") == "assistant":
            if assistants == turn:
                break
            assistants += 1
        elif message.get("role") == "user":
            last_user = message.get("content") or ""
    return clip(last_user) or "(no user message)"


def probe_kind(row: dict[str, Any]) -> str:
    """``call`` or ``no_call`` (the probe's ``kind``; derived from the label for older rows)."""
    if row.get("kind"):
        return str(row["kind"])
    label_kind = row.get("label", {}).get("kind", "call")
    return {"call": "call", "refuse": "no_call", "clarify": "no_call"}.get(label_kind, label_kind)


def probe_error_groups(rows: Iterable[dict[str, Any]], trajectories: Path) -> list[ProbeErrorGroup]:
    """The probe's mistakes by class, largest first, each with its first example.

    Rows written before probes recorded ``error_class`` are grouped by their reason's shape.
    """
    per_kind: Counter[str] = Counter()
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        kind = probe_kind(row)
        per_kind[kind] += 1
        if row.get("correct"):
            continue
        key = (str(row.get("error_class") or reason_class(row.get("reason", ""))), kind)
        counts[key] += 1
        first.setdefault(key, row)
    wanted = {row["trajectory_id"] for row in first.values()}
    found = {row["id"]: row for _, row in iter_jsonl_dicts(trajectories) if row.get("id") in wanted}
    groups = []
    for (error_class, kind), count in counts.most_common():
        row = first[(error_class, kind)]
        trajectory = found.get(row["trajectory_id"], {})
        example = ProbeExample(
            id=row.get("id", ""),
            request=_request(trajectory, int(row.get("turn", 0))),
            label=format_label(row.get("label", {})),
            answer=format_answer(row),
            reason=clip(row.get("reason", "")),
        )
        groups.append(ProbeErrorGroup(error_class, kind, Rate(count, per_kind[kind]), example))
    return groups
