"""Run report: ``report.html``, ``summary.md``, ``report.json`` and ``plots/*.png``.

Reads only a run directory's files, so it can be re-made at any time with
``tooldojo report runs/NAME``; ``tooldojo report runs/A runs/B`` compares runs side by side.

One small module per concern: :mod:`.collect` reads a run, :mod:`.examples` picks the
records a reader looks at, :mod:`.stats` gives every rate its n and Wilson interval,
:mod:`.tables` and :mod:`.plots` shape the figures, :mod:`.html_page` (jinja2 templates
shipped in ``templates/``) and :mod:`.markdown` write them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from tooldojo.report.collect import RunData, collect_run
from tooldojo.report.stats import Rate, wilson_interval
from tooldojo.report.tables import Column, all_tables, headline_tables

__all__ = ["Rate", "collect_run", "wilson_interval", "write_comparison", "write_report"]


def _atomic_write(path: Path, data: str | bytes) -> None:
    """Write beside, then rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Rate):
        return value.to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(getattr(value, k)) for k in asdict(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write(out: Path, title: str, runs: list[RunData], columns: list[Column]) -> Path:
    from tooldojo.report.html_page import render_html
    from tooldojo.report.markdown import render_markdown
    from tooldojo.report.plots import all_plots

    out.mkdir(parents=True, exist_ok=True)
    tables = headline_tables(runs) + all_tables(columns)
    plots = all_plots(columns)
    (out / "plots").mkdir(exist_ok=True)
    for plot in plots:
        _atomic_write(out / "plots" / plot.name, plot.png)
    for stale in set((out / "plots").glob("*.png")) - {out / "plots" / p.name for p in plots}:
        stale.unlink()  # a figure an earlier report drew from data no longer there
    comparison = len(runs) > 1
    _atomic_write(out / "summary.md", render_markdown(title, runs, tables))
    _atomic_write(
        out / "report.json",
        json.dumps({"runs": _jsonable(runs), "tables": _jsonable(tables)}, indent=1, default=str),
    )
    _atomic_write(out / "report.html", render_html(title, runs, tables, plots, comparison))
    return out / "report.html"


def write_report(root: str | Path) -> Path:
    """(Re)write the report of one run inside it; returns the path of ``report.html``."""
    root = Path(root)
    run = collect_run(root)
    return _write(root, f"run {run.name}", [run], [(s.name, s) for s in run.stages])


def write_comparison(roots: list[str | Path], out: str | Path) -> Path:
    """A side-by-side report of several runs in ``out``: a column per run (its last stage)."""
    runs = [collect_run(Path(root)) for root in roots]
    columns = [(run.name, run.stages[-1]) for run in runs if run.stages]
    title = "comparison of " + ", ".join(run.name for run in runs)
    return _write(Path(out), title, runs, columns)
