"""The report's figures as PNG bytes: n in every label, Wilson intervals as error bars.

Each figure is drawn from the same columns as the tables (stages of a run, or runs side by
side), so a bar and its table cell always agree.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from tooldojo.report.stats import Rate
from tooldojo.report.tables import POOLED, Column, bfcl_cell


@dataclass(frozen=True)
class Plot:
    """One figure: file name under ``plots/``, a caption and the PNG itself."""

    name: str
    caption: str
    png: bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in a test
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def _n_label(rates: list[Rate | None]) -> str:
    """``n=3`` when every column counted the same entries, else ``n=3/5`` in column order."""
    ns = [str(r.n) if r else "–" for r in rates]
    return f"n={ns[0]}" if len(set(ns)) == 1 else "n=" + "/".join(ns)


def draw_rate_bars(ax: Any, title: str, names: list[str], rows: dict[str, list[Rate | None]]):
    """Grouped bars of percentages, one group per row and one bar per column, with 95% CIs."""
    width = 0.8 / max(1, len(names))
    for offset, name in enumerate(names):
        xs, heights, low, high = [], [], [], []
        for i, rates in enumerate(rows.values()):
            rate = rates[offset]
            if rate is None:
                continue
            lo, hi = rate.interval
            xs.append(i + offset * width)
            heights.append(100 * rate.share)
            low.append(100 * (rate.share - lo))
            high.append(100 * (hi - rate.share))
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels(
        [f"{key}\n({_n_label(rates)})" for key, rates in rows.items()],
        rotation=30,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy % (95% Wilson CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def rate_figure(panels: dict[str, dict[str, list[Rate | None]]], names: list[str]) -> bytes:
    """One panel of :func:`draw_rate_bars` per entry of ``panels`` (title → rows), side by side."""
    plt = _pyplot()
    widest = max(len(rows) for rows in panels.values())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(6.0, 0.9 * widest + 2) * len(panels), 4.5), squeeze=False
    )
    for ax, (title, rows) in zip(axes[0], panels.items(), strict=True):
        draw_rate_bars(ax, title, names, rows)
    return _png(fig)


def funnel_bars(columns: list[Column]) -> bytes:
    """Bars from zero: trajectories verified, then still in after each gate, drop marked."""
    plt = _pyplot()
    gates: dict[str, None] = {}
    for _, stage in columns:
        gates.update(dict.fromkeys(step.gate for step in stage.funnel))
    steps = ["verified", *gates]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(steps)), 4))
    width = 0.8 / len(columns)
    for offset, (name, stage) in enumerate(columns):
        by_gate = {step.gate: step for step in stage.funnel}
        values = [stage.verified] + [by_gate[g].kept if g in by_gate else 0 for g in gates]
        xs = [i + offset * width for i in range(len(steps))]
        bars = ax.bar(xs, values, width, label=f"{name} (n={stage.verified})")
        notes = [str(stage.verified)] + [
            f"{by_gate[g].kept} (−{by_gate[g].dropped})" if g in by_gate else "not run"
            for g in gates
        ]
        ax.bar_label(bars, notes, fontsize=7, padding=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(steps))])
    ax.set_xticklabels([steps[0]] + [f"after {g}" for g in gates], fontsize=8)
    ax.set_ylim(0, 1.15 * max(1, *(stage.verified for _, stage in columns)))
    ax.set_ylabel("trajectories")
    ax.set_title("verification funnel: still in after each gate (−dropped there)", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def count_bars(title: str, columns: list[Column], keys: list[str]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(keys)), 4))
    width = 0.8 / len(columns)
    for offset, (name, stage) in enumerate(columns):
        values = [stage.volume.get(k, 0) for k in keys]
        bars = ax.bar([i + offset * width for i in range(len(keys))], values, width, label=name)
        ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))])
    ax.set_xticklabels(keys, fontsize=8)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def curves(columns: list[Column]) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, stage in columns:
        steps = stage.curves.get("step", [])
        for ax, key in zip(axes, ("loss", "reward"), strict=True):
            if stage.curves.get(key):
                ax.plot(steps[: len(stage.curves[key])], stage.curves[key], label=name)
    axes[0].set_title("training loss", fontsize=10)
    axes[1].set_title("GRPO gated reward (mean)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:  # SFT-only runs have no reward curve
            ax.legend(fontsize=7)
    return _png(fig)


def capability_map(name: str, table: dict[str, dict[str, Rate]]) -> bytes:
    """Probe accuracy per (category, target tool), each cell annotated with k/n."""
    plt = _pyplot()
    categories = sorted(table)
    tools = sorted({t for row in table.values() for t in row})
    grid = [[table[c][t].share if t in table[c] else math.nan for t in tools] for c in categories]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(tools) + 2), 0.5 * len(categories) + 2))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for y, category in enumerate(categories):
        for x, tool in enumerate(tools):
            if (rate := table[category].get(tool)) is not None:
                ax.text(x, y, f"{rate.k}/{rate.n}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(tools)))
    ax.set_xticklabels(tools, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(categories)))
    ax.set_yticklabels(categories, fontsize=8)
    ax.set_title(f"capability map ({name}): probe correct/probed per category × tool", fontsize=9)
    fig.colorbar(image, ax=ax, label="accuracy")
    return _png(fig)


def all_plots(columns: list[Column]) -> list[Plot]:
    """Every figure the columns have data for."""
    names = [name for name, _ in columns]
    plots = []
    modes: dict[str, None] = {}
    for _, stage in columns:
        modes.update(dict.fromkeys(stage.bfcl))
    if modes:
        panels = {}
        for mode in modes:
            categories = sorted(
                {c for _, s in columns if mode in s.bfcl for c in s.bfcl[mode].rates}
            )
            panels[f"BFCL accuracy per category ({mode} mode)"] = {
                key: [bfcl_cell(s, mode, key) for _, s in columns] for key in [*categories, POOLED]
            }
        plots.append(Plot("bfcl.png", "BFCL accuracy per category", rate_figure(panels, names)))
    heldout = sorted({k for _, s in columns for k in s.probe if k.startswith("heldout")})
    if heldout:
        rows = {k.removeprefix("heldout / "): [s.probe.get(k) for _, s in columns] for k in heldout}
        title = "held-out synthetic probe accuracy (kind / category)"
        plots.append(Plot("heldout.png", title, rate_figure({title: rows}, names)))
    with_funnel = [(n, s) for n, s in columns if s.funnel]
    if with_funnel:
        plots.append(Plot("funnel.png", "verification funnel", funnel_bars(with_funnel)))
    with_curves = [(n, s) for n, s in columns if s.curves.get("step")]
    if with_curves:
        plots.append(Plot("reward.png", "training curves", curves(with_curves)))
    last = next(((n, s) for n, s in reversed(columns) if s.capability), None)
    if last:
        plots.append(
            Plot("capability.png", "capability map", capability_map(last[0], last[1].capability))
        )
    with_volume = [(n, s) for n, s in columns if s.volume]
    if with_volume:
        keys = list(with_volume[0][1].volume)
        title = "data volume per iteration"
        plots.append(Plot("volume.png", title, count_bars(title, with_volume, keys)))
    return plots
