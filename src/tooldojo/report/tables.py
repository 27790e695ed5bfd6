"""The report's tables, built once and rendered both as HTML and as Markdown.

A table has one column per *column source*: the stages of one run (``base``,
``iter-000``, ...) for a run's own report, or the last stage of each run for a side-by-side
comparison (``tooldojo report runs/A runs/B``), so both read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tooldojo.report.collect import HeadlineModel, RunData, StageData
from tooldojo.report.stats import Rate

Cell = Rate | int | str | None
Column = tuple[str, StageData]
"""A column's heading and the stage whose figures fill it."""


@dataclass
class Table:
    """Rows of cells under named columns; ``None`` cells render as a dash (not measured)."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    note: str = ""

    @property
    def empty(self) -> bool:
        return all(cell is None for _, cells in self.rows for cell in cells)


def _table(
    title: str,
    columns: list[Column],
    keys: Iterable[str],
    cell: Callable[[StageData, str], Cell],
    note: str = "",
) -> Table:
    return Table(
        title=title,
        columns=[name for name, _ in columns],
        rows=[(key, [cell(stage, key) for _, stage in columns]) for key in keys],
        note=note,
    )


def _union(columns: list[Column], keys: Callable[[StageData], Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, stage in columns:
        seen.update(dict.fromkeys(keys(stage)))
    return list(seen)


def _pooled(rates: Iterable[Rate]) -> Rate | None:
    rates = list(rates)
    return Rate(sum(r.k for r in rates), sum(r.n for r in rates)) if rates else None


POOLED = "all categories run (pooled)"


def bfcl_cell(stage: StageData, mode: str, category: str) -> Rate | None:
    """A stage's BFCL accuracy in one mode and category (or pooled over those run)."""
    if mode not in stage.bfcl:
        return None
    rates = stage.bfcl[mode].rates
    return _pooled(rates.values()) if category == POOLED else rates.get(category)


def bfcl_tables(columns: list[Column]) -> list[Table]:
    """One table per BFCL mode: accuracy per category and pooled over the categories run."""
    tables = []
    for mode in _union(columns, lambda s: s.bfcl):
        description = next(s.bfcl[mode].description for _, s in columns if mode in s.bfcl)

        categories = sorted(
            _union(columns, lambda s, m=mode: s.bfcl[m].rates if m in s.bfcl else {})
        )
        tables.append(
            _table(
                f"BFCL accuracy, {mode} mode",
                columns,
                [*categories, POOLED],
                lambda stage, key, mode=mode: bfcl_cell(stage, mode, key),
                note=f"{description}. Entries per category are BFCL's own, possibly sampled.",
            )
        )
    return tables


def probe_table(columns: list[Column]) -> Table:
    return _table(
        "Probe accuracy (split / kind / category)",
        columns,
        sorted(_union(columns, lambda s: s.probe)),
        lambda stage, key: stage.probe.get(key),
        note="Greedy answers of the stage's model on labelled turns of the synthetic pool; "
        "'call' turns expect calls, 'no_call' turns a refusal or a clarifying question.",
    )


def error_class_table(columns: list[Column]) -> Table:
    return _table(
        "Probe errors by class (split / kind / error class)",
        columns,
        sorted(_union(columns, lambda s: s.error_classes)),
        lambda stage, key: stage.error_classes.get(key),
        note="Share of the split's probed turns of that kind that the model got wrong in that "
        "way (wrong tool, missing or extra argument, wrong value, a call where none was due, "
        "no call where one was, a missed parallel call, or broken format).",
    )


def expansion_table(columns: list[Column]) -> Table:
    """EDDE per error class: scenarios made from a stage's errors, and how the previous
    stage's expansions fared in this one (played, passed every gate, probe correct)."""

    def cell(stage: StageData, key: str) -> Cell:
        made = stage.expanded.get(key)
        fared = stage.expansion_outcomes.get(key)
        parts = [f"made {made}"] if made else []
        if fared:
            parts.append(
                f"earlier ones: {fared.get('played', 0)} played, {fared.get('passed', 0)} "
                f"passed, probe {fared.get('correct', 0)}/{fared.get('probed', 0)}"
            )
        return "; ".join(parts) or None

    keys = sorted(_union(columns, lambda s: [*s.expanded, *s.expansion_outcomes]))
    return _table(
        "Error-driven expansion (EDDE) by error class",
        columns,
        keys,
        cell,
        note="'made': new scenarios conditioned on this stage's verified model errors of that "
        "class; 'earlier ones': the previous stage's expansions in this stage.",
    )


def schema_table(columns: list[Column]) -> Table:
    return _table(
        "Probe: schema-gate pass on turns that call a tool",
        columns,
        sorted(_union(columns, lambda s: s.schema_pass)),
        lambda stage, key: stage.schema_pass.get(key),
    )


ENTERED = "trajectories verified"
PASSED = "passed every gate"


def funnel_table(columns: list[Column]) -> Table:
    """Counts still in after each gate, the drop at each gate, and the overall pass rate."""
    gates = _union(columns, lambda s: [step.gate for step in s.funnel])

    def cell(stage: StageData, key: str) -> Cell:
        if not stage.funnel:
            return None
        if key == ENTERED:
            return stage.verified
        if key == PASSED:
            return Rate(stage.passed, stage.verified)
        step = next((s for s in stage.funnel if s.gate == key.split(" ", 2)[-1]), None)
        return None if step is None else f"{step.kept} (−{step.dropped})"

    return _table(
        "Verification funnel",
        columns,
        [ENTERED, *(f"after gate {g}" for g in gates), PASSED],
        cell,
        note="Gates run in order and stop at a trajectory's first failure: "
        "each row is the count still in, with the count that gate dropped.",
    )


def volume_table(columns: list[Column]) -> Table:
    return _table(
        "Data per iteration",
        columns,
        _union(columns, lambda s: s.volume),
        lambda stage, key: stage.volume.get(key) if stage.volume else None,
    )


ORIGINS = ("model", "forced", "template", "executed")


def accounting_table(columns: list[Column]) -> Table:
    """Who wrote each role's turns: the model freely, forced from the label, a template, a tool."""
    keys = []
    for role in _union(columns, lambda s: s.accounting):
        present = _union(columns, lambda s, r=role: s.accounting.get(r, {}))
        keys += [
            f"{role} / {o}"
            for o in [*ORIGINS, *sorted(set(present) - set(ORIGINS))]
            if o in present
        ]

    def cell(stage: StageData, key: str) -> Cell:
        role, origin = key.split(" / ", 1)
        counts = stage.accounting.get(role)
        total = sum(counts.values()) if counts else 0
        return Rate(int(counts.get(origin, 0)), total) if total else None

    return _table(
        "Turn provenance (share of each role's turns)",
        columns,
        keys,
        cell,
        note="model: written freely by the role's model; forced: copied or teacher-forced "
        "from the planned label; template: filled from a template; executed: a real tool result.",
    )


ALL = "all categories (pooled)"
ASKED = "answers asked in this run (wall time)"
REUSED = "answers reused (time to re-score them)"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _headline_cell(model: HeadlineModel | None, key: str) -> Cell:
    if model is None:
        return None
    if key == ASKED:
        return f"{model.computed} ({_minutes(model.wall_s)})"
    if key == REUSED:
        seconds = "–" if model.reused_wall_s is None else f"{model.reused_wall_s:.1f} s"
        return f"{model.reused} ({seconds})"
    if key == ALL:
        return _pooled(model.rates.values())
    return model.rates.get(key)


def _headline_scope(runs: list[RunData]) -> str:
    """Says plainly whether the headline covers every entry or a sample (and how much)."""
    sampled = []
    for run in runs:
        for models in run.headline.modes.values() if run.headline else []:
            for model in models.values():
                sampled += [
                    f"{c} {rate.n} of {model.dataset_sizes[c]}"
                    for c, rate in model.rates.items()
                    if rate.n < model.dataset_sizes.get(c, rate.n)
                ]
    if sampled:
        shown = ", ".join(dict.fromkeys(sampled))
        return (
            f"SAMPLED, not the full benchmark: {shown} entries. These rates are over the "
            "sample only (loop.final_eval.limit); the headline is every entry."
        )
    return "Full: every entry BFCL ships in each category."


def headline_tables(runs: list[RunData]) -> list[Table]:
    """The final evaluation (``loop.final_eval``): one table per mode, a column per model
    (``base``: the starting model, ``final``: the last checkpoint; per run in a comparison),
    a row per category with correct/total and the Wilson interval, then the time it took."""
    with_headline = [(run, run.headline) for run in runs if run.headline and run.headline.modes]
    if not with_headline:
        return []
    scope = _headline_scope([run for run, _ in with_headline])
    sampled = scope.startswith("SAMPLED")
    tables = []
    for mode in dict.fromkeys(m for _, headline in with_headline for m in headline.modes):
        columns: list[tuple[str, dict[str, HeadlineModel], str]] = []
        status = []
        for run, headline in with_headline:
            models = headline.modes.get(mode, {})
            prefix = f"{run.name}: " if len(with_headline) > 1 else ""
            for name, state in headline.status.items():
                if state != "done":
                    status.append(f"{prefix}{name} is {state} (incomplete)")
                columns.append((f"{prefix}{name}", models, name))
            if not headline.checked:
                status.append(f"{prefix}no headline.json yet (tooldojo eval headline checks it)")
        categories = list(
            dict.fromkeys(c for _, models, _ in columns for m in models.values() for c in m.rates)
        )
        note = scope + " base: the starting model; final: the last trained checkpoint."
        if status:
            note += " " + "; ".join(status) + "."
        tables.append(
            Table(
                title=f"Headline: BFCL {'SAMPLED' if sampled else 'in full'}, {mode} mode, "
                "before and after the loop",
                columns=[heading for heading, _, _ in columns],
                rows=[
                    (key, [_headline_cell(models.get(name), key) for _, models, name in columns])
                    for key in [*categories, ALL, ASKED, REUSED]
                ],
                note=note,
            )
        )
    return tables


def _drop_empty_columns(table: Table) -> Table:
    """Leave out columns with nothing measured (e.g. ``base`` in the funnel: it has no data)."""
    keep = [i for i in range(len(table.columns)) if any(c[i] is not None for _, c in table.rows)]
    return Table(
        title=table.title,
        columns=[table.columns[i] for i in keep],
        rows=[(key, [cells[i] for i in keep]) for key, cells in table.rows],
        note=table.note,
    )


def all_tables(columns: list[Column]) -> list[Table]:
    """Every table the report shows; empty tables and empty columns left out."""
    tables = [
        *bfcl_tables(columns),
        probe_table(columns),
        error_class_table(columns),
        expansion_table(columns),
        schema_table(columns),
        funnel_table(columns),
        volume_table(columns),
        accounting_table(columns),
    ]
    return [_drop_empty_columns(t) for t in tables if t.rows and not t.empty]
