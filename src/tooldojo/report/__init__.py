"""Run report: ``report.html``, ``summary.md`` and ``plots/*.png`` from a run directory.

Reads only files (the manifest and each iteration's outputs), so it can be re-made at
any time with ``tooldojo report runs/NAME``; missing stages are simply left out.
"""

from __future__ import annotations

import csv
import html
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.model import GATES


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _iterations(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("iter-*") if p.is_dir())


def collect(root: Path) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written as ``report.json``)."""
    data: dict[str, Any] = {
        "bfcl": {},
        "heldout": {},
        "funnel": {},
        "curves": {},
        "volume": {},
        "capability": {},
        "schema_pass": {},
    }
    stages = [("base", root / "base")] + [(p.name, p) for p in _iterations(root)]
    for name, folder in stages:
        bfcl = _load_json(folder / "eval" / "bfcl.json")
        if bfcl:
            data["bfcl"][name] = {
                mode: {cat: row["accuracy"] for cat, row in summary["categories"].items()}
                | {"_description": summary.get("mode_description", mode)}
                for mode, summary in bfcl.items()
            }
    for name, folder in stages:
        summary = _load_json(folder / "probe_summary.json") or {}
        data["heldout"][name] = {
            key.split("/", 1)[1]: row["accuracy"]
            for key, row in summary.get("category", {}).items()
            if key.startswith("heldout/")
        }
        data["schema_pass"][name] = {
            split: row["accuracy"] for split, row in summary.get("schema_pass", {}).items()
        }
        if name == "base":
            continue  # the starting model has only its held-out probe
        data["capability"][name] = _capability(folder / "probe.jsonl")
        data["funnel"][name] = _funnel(folder / "verified.jsonl")
        data["curves"][name] = _curve(folder / "train" / "metrics.csv")
        data["volume"][name] = {
            "planned": _count(folder / "scenarios.jsonl"),
            "trajectories": _count(folder / "trajectories.jsonl"),
            "passed": data["funnel"][name].get("passed", 0),
            "train pool": _count(folder / "train_data.jsonl"),
            "held-out": _count(folder / "heldout.jsonl"),
            "expanded": _count(folder / "expanded.jsonl"),
        }
    return data


def _count(path: Path) -> int:
    return sum(1 for _ in iter_jsonl_dicts(path)) if path.is_file() else 0


def _funnel(path: Path) -> dict[str, int]:
    """How many trajectories are still in after each gate (``passed`` = through all)."""
    counts: Counter[str] = Counter()
    total = passed = 0
    for _, row in iter_jsonl_dicts(path) if path.is_file() else []:
        total += 1
        passed += bool(row.get("passed"))
        for verdict in row.get("verdicts", []):
            if verdict.get("passed"):
                counts[verdict["gate"]] += 1
    return {"total": total, **{g: counts[g] for g in GATES if g in counts}, "passed": passed}


def _curve(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    series: dict[str, list[float]] = defaultdict(list)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            for key in ("step", "loss", "reward", "rewards/label_gate/mean"):
                if row.get(key):
                    series[key].append(float(row[key]))
    return dict(series)


def _capability(path: Path) -> dict[str, dict[str, float]]:
    """Accuracy per (category, target tool) over every probed turn."""
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for _, row in iter_jsonl_dicts(path) if path.is_file() else []:
        tools = sorted({c["name"] for c in row["label"].get("calls", [])}) or ["(no call)"]
        for tool in tools:
            cell = cells[(row["category"], tool)]
            cell[0] += int(row["correct"])
            cell[1] += 1
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (category, tool), (correct, total) in cells.items():
        table[category][tool] = correct / total
    return dict(table)


# --- plots -------------------------------------------------------------------------------


def _plots(data: dict[str, Any], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        made.append(name)

    def grouped_bars(ax: Any, series: dict[str, dict[str, float]], title: str) -> None:
        categories = sorted(
            {c for values in series.values() for c in values if not c.startswith("_")}
        )
        width = 0.8 / max(1, len(series))
        for offset, (label, values) in enumerate(series.items()):
            xs = [i + offset * width for i in range(len(categories))]
            ax.bar(xs, [100 * values.get(c, 0.0) for c in categories], width, label=label)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))])
        ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy %")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)

    modes = sorted({m for per_iter in data["bfcl"].values() for m in per_iter})
    if modes:
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            grouped_bars(
                ax,
                {it: v[mode] for it, v in data["bfcl"].items() if mode in v},
                f"BFCL accuracy per category ({mode})",
            )
        save(fig, "bfcl.png")
    if any(data["heldout"].values()):
        fig, ax = plt.subplots(figsize=(7, 4))
        grouped_bars(ax, data["heldout"], "held-out synthetic accuracy per category")
        save(fig, "heldout.png")
    if data["funnel"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, funnel in data["funnel"].items():
            keys = list(funnel)
            ax.plot(keys, [funnel[k] for k in keys], marker="o", label=name)
        ax.set_title("verification funnel (trajectories still in after each gate)", fontsize=10)
        ax.legend(fontsize=7)
        save(fig, "funnel.png")
    curves = {k: v for k, v in data["curves"].items() if v.get("step")}
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, series in curves.items():
            for ax, key in zip(axes, ("loss", "reward"), strict=True):
                if series.get(key):
                    ax.plot(series["step"][: len(series[key])], series[key], label=name)
        axes[0].set_title("training loss", fontsize=10)
        axes[1].set_title("GRPO gated reward (mean)", fontsize=10)
        for ax in axes:
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:  # SFT-only runs have no reward curve
                ax.legend(fontsize=7)
        save(fig, "reward.png")
    last = next((v for v in reversed(list(data["capability"].values())) if v), None)
    if last:
        categories = sorted(last)
        tools = sorted({t for row in last.values() for t in row})
        grid = [[last[c].get(t, float("nan")) for t in tools] for c in categories]
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(tools) + 2), 0.5 * len(categories) + 2))
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(tools)))
        ax.set_xticklabels(tools, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(categories)))
        ax.set_yticklabels(categories, fontsize=8)
        ax.set_title(
            "capability map: probe accuracy (category x tool), last iteration", fontsize=10
        )
        fig.colorbar(image, ax=ax)
        save(fig, "capability.png")
    if data["volume"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        grouped_bars_counts = {it: v for it, v in data["volume"].items()}
        keys = list(next(iter(grouped_bars_counts.values())))
        width = 0.8 / len(grouped_bars_counts)
        for offset, (name, volume) in enumerate(grouped_bars_counts.items()):
            ax.bar(
                [i + offset * width for i in range(len(keys))],
                [volume[k] for k in keys],
                width,
                label=name,
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))])
        ax.set_xticklabels(keys, fontsize=8)
        ax.set_title("data volume per iteration", fontsize=10)
        ax.legend(fontsize=7)
        save(fig, "volume.png")
    return made


# --- documents ---------------------------------------------------------------------------


def _percent_bullets(title: str, per_iteration: dict[str, dict[str, float]]) -> list[str]:
    """A Markdown section with one line per iteration of ``name percent`` pairs (none: empty)."""
    if not any(per_iteration.values()):
        return []
    lines = [f"## {title}", ""]
    for it, values in per_iteration.items():
        shown = ", ".join(f"{name} {100 * share:.0f}" for name, share in sorted(values.items()))
        lines.append(f"- {it}: {shown or 'n/a'}")
    return [*lines, ""]


def _markdown(root: Path, data: dict[str, Any]) -> str:
    lines = [f"# tooldojo run `{root.name}`", ""]
    manifest = _load_json(root / "manifest.json") or {}
    stages = manifest.get("stages", {})
    done = sum(1 for s in stages.values() if s.get("status") == "done")
    lines += [f"Stages done: {done}/{len(stages)}.", ""]
    if data["bfcl"]:
        lines += ["## BFCL accuracy (%)", ""]
        for mode in sorted({m for v in data["bfcl"].values() for m in v}):
            rows = {it: v[mode] for it, v in data["bfcl"].items() if mode in v}
            categories = sorted({c for v in rows.values() for c in v if not c.startswith("_")})
            description = next(iter(rows.values())).get("_description", mode)
            lines += [
                f"Mode: {description}",
                "",
                "| model | " + " | ".join(categories) + " |",
                "|---|" + "---|" * len(categories),
            ]
            for it, values in rows.items():
                lines.append(
                    f"| {it} | "
                    + " | ".join(f"{100 * values.get(c, 0):.1f}" for c in categories)
                    + " |"
                )
            lines.append("")
    lines += _percent_bullets("Held-out synthetic accuracy (%)", data["heldout"])
    lines += _percent_bullets(
        "Probe: schema-gate pass on turns that call a tool (%)", data["schema_pass"]
    )
    if data["volume"]:
        lines += ["## Data per iteration", ""]
        for it, volume in data["volume"].items():
            lines.append(f"- {it}: " + ", ".join(f"{k} {v}" for k, v in volume.items()))
        lines.append("")
    return "\n".join(lines) + "\n"


def _html(root: Path, markdown: str, plots: list[str]) -> str:
    body = "".join(
        f'<h3>{html.escape(name)}</h3><img src="plots/{html.escape(name)}" style="max-width:100%">'
        for name in plots
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>tooldojo run {html.escape(root.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style></head><body>"
        f"<h1>tooldojo run {html.escape(root.name)}</h1>"
        f"<pre>{html.escape(markdown)}</pre>{body}</body></html>\n"
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(root: str | Path) -> Path:
    """(Re)write ``report.html``, ``summary.md``, ``report.json`` and ``plots/`` of a run."""
    root = Path(root)
    data = collect(root)
    plots = _plots(data, root / "plots")
    markdown = _markdown(root, data)
    _atomic_write(root / "summary.md", markdown)
    _atomic_write(root / "report.json", json.dumps(data, indent=2, default=str))
    _atomic_write(root / "report.html", _html(root, markdown, plots))
    return root / "report.html"
