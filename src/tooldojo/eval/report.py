"""The BFCL summary as a rich table: categories, BFCL's groups, overall, and the mode."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _pct(value: Any) -> str:
    return "N/A" if value == "N/A" else f"{100 * float(value):.2f}%"


def bfcl_table(summary: dict[str, Any]) -> Table:
    """Per-category accuracy, then the summary groups; the title states model and mode."""
    table = Table(
        title=f"BFCL · {summary['model']} · {summary['mode_description']}",
        caption=f"{summary['benchmark']}"
        + (f" · --limit {summary['limit']} per category" if summary.get("limit") else ""),
    )
    table.add_column("category", style="bold cyan")
    table.add_column("accuracy", justify="right")
    table.add_column("correct / total", justify="right")
    table.add_column("top error types", overflow="fold")
    for category, score in summary["categories"].items():
        errors = ", ".join(f"{kind} ×{n}" for kind, n in list(score["error_types"].items())[:3])
        table.add_row(
            category, _pct(score["accuracy"]), f"{score['correct']} / {score['total']}", errors
        )
    groups = summary["groups"]
    table.add_section()
    for label, key in (
        ("non-live AST", "non_live_ast"),
        ("live AST", "live_ast"),
        ("multi-turn", "multi_turn"),
        ("irrelevance", "irrelevance"),
        ("relevance", "relevance"),
        ("agentic (not run)", "agentic"),
    ):
        group = groups[key]
        missing = group.get("not_run", [])
        note = f"not run (count as 0): {', '.join(missing)}" if missing else ""
        shown = "N/A" if key == "agentic" else group["accuracy"]
        table.add_row(label, _pct(shown), "", note)
    table.add_section()
    table.add_row("overall (BFCL weights)", _pct(groups["overall"]["accuracy"]), "", "agentic = 0")
    table.add_row(
        "overall without agentic", _pct(groups["overall_without_agentic"]["accuracy"]), "", ""
    )
    return table
