"""``report.html``: the tables, figures and data of one or more runs, from jinja2 templates.

The file is self-contained (figures embedded as base64 PNG, CSS inline, no script), so it
opens offline and can be mailed. Autoescaping is on for everything: trajectories hold
arbitrary text written by models and users, and must never become markup.
"""

from __future__ import annotations

import base64
from functools import cache

import jinja2

from tooldojo.report.collect import RunData
from tooldojo.report.plots import Plot
from tooldojo.report.stats import Rate
from tooldojo.report.tables import Table
from tooldojo.report.views import iteration_view, refine_rows, run_facts


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tooldojo.report", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the test, not the page
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["rate"] = lambda value: isinstance(value, Rate)
    return env


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(
    title: str, runs: list[RunData], tables: list[Table], plots: list[Plot], comparison: bool
) -> str:
    """The page; per-iteration data sections only for a single run's report."""
    template = environment().get_template("report.html.j2")
    return template.render(
        title=title,
        runs=[run_facts(run) for run in runs],
        tables=tables,
        figures=[(plot.caption, plot.name, data_uri(plot.png)) for plot in plots],
        iterations=[] if comparison else [iteration_view(s) for s in runs[0].iterations],
        refine=[] if comparison else refine_rows(runs[0].refine),
        comparison=comparison,
    )
