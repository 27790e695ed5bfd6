"""The report's tables, built once and rendered both as HTML and as Markdown.

A table has one column per *column source*: the stages of one run (``base``,
``iter-000``, ...) for a run's own report, or the last stage of each run for a side-by-side
comparison (``tooldojo report runs/A runs/B``), so both read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tooldojo.report.collect import StageData
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
        schema_table(columns),
        funnel_table(columns),
        volume_table(columns),
        accounting_table(columns),
    ]
    return [_drop_empty_columns(t) for t in tables if t.rows and not t.empty]
