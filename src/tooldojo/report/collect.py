"""Reading a run directory into plain data: one :class:`StageData` per model stage.

Reads only files (the manifest and each stage's outputs), so a report can be re-made at any
time; a file that is missing (a stage not run yet, or data an older run did not write, such
as ``accounting.json`` or probe ``error_class``) leaves its part empty instead of failing.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.model import GATES
from tooldojo.report.examples import (
    ProbeErrorGroup,
    ReasonGroup,
    gate_failures,
    probe_error_groups,
    probe_kind,
    sample_passed,
)
from tooldojo.report.stats import Rate

LEGACY_ROLES = {"server": "tool"}
"""Accounting role names of older run directories (``tooldojo.verify.accounting``)."""

SAMPLE_SIZE = 3
"""Verified trajectories shown per iteration (a seeded sample, so a re-made report matches)."""


@dataclass(frozen=True)
class GateStep:
    """One gate of the verification funnel: trajectories that reached it and got through."""

    gate: str
    entered: int
    kept: int

    @property
    def dropped(self) -> int:
        return self.entered - self.kept


@dataclass
class BfclMode:
    """BFCL scores of one prompting mode: per category, correct of total."""

    description: str
    rates: dict[str, Rate] = field(default_factory=dict)


@dataclass
class StageData:
    """Everything the report shows about one model stage (``base`` or ``iter-NNN``)."""

    name: str
    bfcl: dict[str, BfclMode] = field(default_factory=dict)
    probe: dict[str, Rate] = field(default_factory=dict)
    """``split / kind / category`` → the probe's accuracy."""
    schema_pass: dict[str, Rate] = field(default_factory=dict)
    capability: dict[str, dict[str, Rate]] = field(default_factory=dict)
    funnel: list[GateStep] = field(default_factory=list)
    verified: int = 0
    passed: int = 0
    failures: dict[str, list[ReasonGroup]] = field(default_factory=dict)
    volume: dict[str, int] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    probe_errors: list[ProbeErrorGroup] = field(default_factory=list)
    error_classes: dict[str, Rate] = field(default_factory=dict)
    """``split / kind / error class`` → the share of that split's probed turns of that kind
    with that error (the probe's verdict, see ``loop.classify``)."""
    expanded: dict[str, int] = field(default_factory=dict)
    """Error class → scenarios EDDE expanded from this stage's verified errors."""
    expansion_outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Error class → how the previous stage's expansions fared here (played, passed, probed,
    correct), from ``loop_stats.json``."""


HEADLINE_MODELS = ("base", "final")
"""The final evaluation's models (``<run>/headline/<model>/bfcl.json``, written by the loop's
``loop.final_eval``; the folder name is the one ``tooldojo.eval.headline`` uses)."""


@dataclass
class HeadlineModel:
    """One model's final evaluation in one mode: per category correct of total."""

    rates: dict[str, Rate] = field(default_factory=dict)
    dataset_sizes: dict[str, int] = field(default_factory=dict)
    """Entries BFCL ships per category: a total below it means a sample was evaluated."""
    wall_s: float | None = None
    """Wall time spent asking the model (summed over resumes)."""
    computed: int = 0
    reused: int = 0
    reused_wall_s: float | None = None

    @property
    def sampled(self) -> bool:
        return any(rate.n < self.dataset_sizes.get(c, rate.n) for c, rate in self.rates.items())


@dataclass
class Headline:
    """The final evaluation of a run: mode → model (``base``, ``final``) → scores."""

    modes: dict[str, dict[str, HeadlineModel]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    """Stage status of ``headline/<model>`` in the manifest (``done``, ``running``...)."""
    final_spec: str = ""
    checked: bool = False
    """``headline.json`` is in the run: every count was recounted and the data found clean."""

    @property
    def sampled(self) -> bool:
        return any(m.sampled for models in self.modes.values() for m in models.values())


@dataclass
class RunData:
    """One run: its manifest facts, its stages in order and the corpus refinement report."""

    name: str
    root: Path
    model: str = ""
    seed: int = 0
    stages_done: int = 0
    stages_total: int = 0
    stages: list[StageData] = field(default_factory=list)
    refine: dict[str, Any] | None = None
    headline: Headline | None = None

    @property
    def iterations(self) -> list[StageData]:
        return [s for s in self.stages if s.name != "base"]


def load_json(path: Path) -> Any:
    """The file's JSON, ``None`` when it does not exist; a one-line error when it is broken."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ToolDojoError(
            f"{path}: invalid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None


def count_lines(path: Path) -> int:
    return sum(1 for _ in iter_jsonl_dicts(path))


def collect_run(root: Path, sample_size: int = SAMPLE_SIZE) -> RunData:
    """Read ``root`` (a run directory) into a :class:`RunData`."""
    manifest = load_json(root / "manifest.json") or {}
    stages = manifest.get("stages", {})
    loop_config = manifest.get("config", {}).get("loop", {})
    run = RunData(
        name=root.resolve().name,
        root=root,
        model=str(loop_config.get("model", "")),
        seed=int(manifest.get("seed", loop_config.get("seed", 0)) or 0),
        stages_done=sum(1 for s in stages.values() if s.get("status") == "done"),
        stages_total=len(stages),
        refine=load_json(root / "refine_report.json"),
    )
    folders = [root / "base", *sorted(p for p in root.glob("iter-*") if p.is_dir())]
    for folder in folders:
        if folder.is_dir():
            run.stages.append(collect_stage(folder, run.seed, sample_size))
    if (root / "headline").is_dir():
        run.headline = collect_headline(root, stages)
    return run


def collect_headline(root: Path, stages: dict[str, Any]) -> Headline:
    """The final evaluation's summaries (each written when its model's evaluation finished)."""
    headline = Headline(checked=(root / "headline.json").is_file())
    for name in HEADLINE_MODELS:
        headline.status[name] = (stages.get(f"headline/{name}") or {}).get("status", "not started")
        summary = load_json(root / "headline" / name / "bfcl.json") or {}
        for mode, result in sorted(summary.items()):
            if name == "final":
                headline.final_spec = str(result.get("model_spec", ""))
            model = HeadlineModel(
                wall_s=result.get("wall_s"),
                reused=int(result.get("reused", 0)),
                reused_wall_s=result.get("reused_wall_s"),
            )
            for category, row in result.get("categories", {}).items():
                if row.get("total"):
                    model.rates[category] = Rate(int(row["correct"]), int(row["total"]))
                    model.dataset_sizes[category] = int(row.get("dataset_size", row["total"]))
            model.computed = sum(r.n for r in model.rates.values()) - model.reused
            headline.modes.setdefault(mode, {})[name] = model
    return headline


def collect_stage(folder: Path, seed: int, sample_size: int) -> StageData:
    stage = StageData(name=folder.name)
    stage.bfcl = _bfcl(load_json(folder / "eval" / "bfcl.json") or {})
    probe_rows = [row for _, row in iter_jsonl_dicts(folder / "probe.jsonl")]
    stage.probe, stage.schema_pass, stage.capability = _probe_rates(probe_rows)
    stage.error_classes = _error_class_rates(probe_rows)
    if folder.name == "base":
        return stage  # the starting model has only its evaluations
    verified = folder / "verified.jsonl"
    stage.funnel, stage.verified, stage.passed = _funnel(verified)
    stage.failures = gate_failures(verified)
    stage.samples = sample_passed(verified, sample_size, seed=f"{seed}:{folder.name}")
    stage.probe_errors = probe_error_groups(probe_rows, verified)
    stage.curves = _curve(folder / "train" / "metrics.csv")
    loop_stats = load_json(folder / "loop_stats.json") or {}
    stage.expanded = {str(k): int(v) for k, v in (loop_stats.get("expanded") or {}).items()}
    stage.expansion_outcomes = dict(loop_stats.get("previous_expansions") or {})
    accounting = load_json(folder / "accounting.json") or {}
    # older loop runs named the tool role "server"; the report shows today's name, "tool"
    stage.accounting = {LEGACY_ROLES.get(r, r): counts for r, counts in accounting.items()}
    stage.volume = {
        "planned": count_lines(folder / "scenarios.jsonl"),
        "trajectories": count_lines(folder / "trajectories.jsonl"),
        "passed": stage.passed,
        "train pool": count_lines(folder / "train_data.jsonl"),
        "held-out": count_lines(folder / "heldout.jsonl"),
        "expanded": count_lines(folder / "expanded.jsonl"),
    }
    return stage


def _bfcl(summary: dict[str, Any]) -> dict[str, BfclMode]:
    modes = {}
    for mode, result in sorted(summary.items()):
        categories = result.get("categories", {})
        mode_data = BfclMode(description=result.get("mode_description", mode))
        for category, row in categories.items():
            total = int(row.get("total", row.get("total_count", 0)))
            if total:
                correct = int(row.get("correct", round(row["accuracy"] * total)))
                mode_data.rates[category] = Rate(correct, total)
        modes[mode] = mode_data
    return modes


def _error_class_rates(rows: list[dict[str, Any]]) -> dict[str, Rate]:
    """Per split and kind, each error class's share of the probed turns (correct turns
    count in the total, under no class)."""
    totals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        group = f"{row['split']} / {probe_kind(row)}"
        totals[group] += 1
        if not row.get("correct") and row.get("error_class"):
            errors[f"{group} / {row['error_class']}"] += 1
    return {key: Rate(k, totals[key.rsplit(" / ", 1)[0]]) for key, k in sorted(errors.items())}


def _probe_rates(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, Rate], dict[str, Rate], dict[str, dict[str, Rate]]]:
    """Accuracy per split/kind/category, schema-gate pass per split, and the capability map."""
    accuracy: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    schema: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        kind = probe_kind(row)
        correct = int(bool(row.get("correct")))
        if row.get("near_miss"):  # the harder refusals, also apart
            cell = accuracy[f"{row['split']} / {kind} / {row['category']} (near miss)"]
            cell[0] += correct
            cell[1] += 1
        for key, tally, hit in (
            (f"{row['split']} / {kind} / {row['category']}", accuracy, correct),
            (row["split"], schema if kind == "call" else None, int(bool(row.get("schema_ok")))),
        ):
            if tally is not None:
                tally[key][0] += hit
                tally[key][1] += 1
        tools = sorted({c["name"] for c in row.get("label", {}).get("calls", [])}) or ["(no call)"]
        for tool in tools:
            cells[(row["category"], tool)][0] += correct
            cells[(row["category"], tool)][1] += 1
    capability: dict[str, dict[str, Rate]] = defaultdict(dict)
    for (category, tool), (k, n) in sorted(cells.items()):
        capability[category][tool] = Rate(k, n)
    return (
        {key: Rate(k, n) for key, (k, n) in sorted(accuracy.items())},
        {key: Rate(k, n) for key, (k, n) in sorted(schema.items())},
        dict(capability),
    )


def _funnel(path: Path) -> tuple[list[GateStep], int, int]:
    """Gates in the order they ran, each with how many reached it and how many got through.

    Verification stops at a trajectory's first failed gate, so a gate's ``entered`` is the
    previous gate's ``kept``; gates not configured for the run have no verdicts and no step.
    """
    entered: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    total = passed = 0
    for _, row in iter_jsonl_dicts(path):
        total += 1
        passed += bool(row.get("passed"))
        for verdict in row.get("verdicts", []):
            entered[verdict["gate"]] += 1
            kept[verdict["gate"]] += bool(verdict.get("passed"))
    order = [g for g in GATES if g in entered] + sorted(set(entered) - set(GATES))
    return [GateStep(g, entered[g], kept[g]) for g in order], total, passed


def _curve(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    series: dict[str, list[float]] = defaultdict(list)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            for key in ("step", "loss", "reward"):
                if row.get(key):
                    series[key].append(float(row[key]))
    return dict(series)
