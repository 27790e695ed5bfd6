"""``tooldojo report``: one run's report inside it, or several runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tooldojo.errors import ToolDojoError


def report_command(
    runs: Annotated[
        list[Path],
        typer.Argument(help="A run directory, or several to compare side by side."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for a comparison's report (default: compare-A-vs-B beside the first run)."
        ),
    ] = None,
) -> None:
    """(Re)write report.html, summary.md, report.json and plots/ of a run, or compare runs."""
    from tooldojo.report import write_comparison, write_report

    for run in runs:
        if not (run / "manifest.json").is_file():
            raise ToolDojoError(f"{run}: not a run directory (no manifest.json)")
    if len(runs) == 1 and out is None:
        typer.echo(str(write_report(runs[0])))
        return
    if out is None:
        out = runs[0].resolve().parent / ("compare-" + "-vs-".join(r.resolve().name for r in runs))
    typer.echo(str(write_comparison(runs, out)))
