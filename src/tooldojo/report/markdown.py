"""``summary.md``: the report's tables for terminals and pull requests.

The same :class:`~tooldojo.report.tables.Table` objects as the HTML, so every rate carries
its k/n and interval here too. Cell text is escaped for Markdown tables (``|``, newlines).
"""

from __future__ import annotations

from tooldojo.report.collect import RunData
from tooldojo.report.tables import Cell, Table


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _cell(value: Cell) -> str:
    return "–" if value is None else _escape(str(value))


def markdown_table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines += [
        "| | " + " | ".join(_escape(c) for c in table.columns) + " |",
        "|---|" + "---:|" * len(table.columns),
    ]
    for key, cells in table.rows:
        lines.append(f"| {_escape(key)} | " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def render_markdown(title: str, runs: list[RunData], tables: list[Table]) -> str:
    lines = [f"# tooldojo {title}", ""]
    for run in runs:
        lines.append(
            f"- `{run.root}`: model `{run.model or '?'}`, seed {run.seed}, "
            f"stages done {run.stages_done}/{run.stages_total}"
        )
    lines += [
        "",
        "Rates read `percent (k/n, 95% CI low–high)` (Wilson interval).",
        "",
    ]
    for table in tables:
        lines += markdown_table(table)
    return "\n".join(lines).rstrip() + "\n"
