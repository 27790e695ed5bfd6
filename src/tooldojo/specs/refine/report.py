"""The refinement report: the funnel from operations seen to tools written, as JSON and Markdown.

The funnel must add up (``operations_seen - dropped == kept_after_filters`` and
``kept_after_filters - merged - bfcl_excluded == tools_written``); :func:`check_funnel`
says where it does not, so a counting bug cannot hide in a pretty table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RefineReport:
    sources: list[str] = field(default_factory=list)
    files: int = 0
    specs_read: int = 0
    unreadable: list[str] = field(default_factory=list)
    operations_seen: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    drop_examples: dict[str, str] = field(default_factory=dict)
    credentials_stripped: int = 0
    plumbing_stripped: int = 0
    kept_after_filters: int = 0
    merged: int = 0
    bfcl_overlaps: list[dict[str, str]] = field(default_factory=list)
    bfcl_excluded: int = 0
    bfcl_guard: str = ""
    tools_written: int = 0
    domains: dict[str, int] = field(default_factory=dict)
    domain_from: dict[str, int] = field(default_factory=dict)
    graph_edges: int = 0
    tools_with_edges: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dropped_total"] = sum(self.dropped.values())
        data["domain_count"] = len(self.domains)
        return data


def check_funnel(report: RefineReport) -> list[str]:
    """Where the funnel's counts do not add up (empty when they do)."""
    problems = []
    dropped = sum(report.dropped.values())
    if report.operations_seen - dropped != report.kept_after_filters:
        problems.append(
            f"seen {report.operations_seen} - dropped {dropped} != kept {report.kept_after_filters}"
        )
    after = report.kept_after_filters - report.merged - report.bfcl_excluded
    if after != report.tools_written:
        problems.append(
            f"kept - merged - bfcl_excluded = {after} != written {report.tools_written}"
        )
    if sum(report.domains.values()) != report.tools_written:
        problems.append("per-domain counts do not sum to the tools written")
    return problems


def render_markdown(report: RefineReport) -> str:
    """The report for a reader: funnel, drops by reason, domains, unreadable specs, overlaps."""
    lines = ["# Refinement report", ""]
    lines += [f"Sources: {', '.join(report.sources)}", ""]
    lines += ["## Funnel", "", "| stage | count |", "|---|---:|"]
    lines += [
        f"| spec files | {report.files:,} |",
        f"| specs read | {report.specs_read:,} |",
        f"| unreadable specs | {len(report.unreadable):,} |",
        f"| operations seen | {report.operations_seen:,} |",
        f"| dropped by filters | {sum(report.dropped.values()):,} |",
        f"| kept after filters | {report.kept_after_filters:,} |",
        f"| merged as near-duplicates | {report.merged:,} |",
        f"| excluded as BFCL overlaps | {report.bfcl_excluded:,} |",
        f"| **tools written** | **{report.tools_written:,}** |",
        f"| domains | {len(report.domains)} |",
        f"| graph edges | {report.graph_edges:,} |",
        f"| tools with graph edges | {report.tools_with_edges:,} |",
        "",
        f"Credential parameters stripped: {report.credentials_stripped:,}; "
        f"transport parameters stripped: {report.plumbing_stripped:,}.",
        "",
        "## Dropped, by reason",
        "",
        "| reason | count | example |",
        "|---|---:|---|",
    ]
    for reason, count in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
        example = report.drop_examples.get(reason, "").replace("|", "\\|")
        lines.append(f"| {reason} | {count:,} | {example} |")
    lines += ["", "## Tools per domain", "", "| domain | tools |", "|---|---:|"]
    for domain, count in sorted(report.domains.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {domain} | {count:,} |")
    origin = ", ".join(f"{k}: {v:,}" for k, v in sorted(report.domain_from.items()))
    lines += ["", f"Domain assigned from: {origin}.", ""]
    lines += ["## Time per stage (seconds)", ""]
    lines += [f"- {stage}: {seconds:.1f}" for stage, seconds in report.seconds.items()]
    lines += ["", f"## Unreadable specs ({len(report.unreadable)})", ""]
    lines += [f"- {line}" for line in report.unreadable] or ["none"]
    lines += ["", f"## BFCL overlaps ({len(report.bfcl_overlaps)})", "", report.bfcl_guard, ""]
    for hit in report.bfcl_overlaps:
        lines.append(f"- `{hit['tool']}` ({hit['kind']}, {hit['bfcl_id']}): {hit['detail']}")
    if not report.bfcl_overlaps:
        lines.append("none")
    return "\n".join(lines) + "\n"


def count_domains(records: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    domains = Counter(r["metadata"]["domain"] for r in records)
    origins = Counter(r["metadata"].get("domain_from") or "unknown" for r in records)
    return dict(domains.most_common()), dict(origins)
