"""``headline.json``: BFCL in full before and after a loop run, per mode, model and category.

The loop's final evaluation (``loop.final_eval``, :mod:`tooldojo.loop._stage_eval`) leaves, per
model (``base``: the starting model, ``final``: the last checkpoint) and mode (``fc``,
``prompting``), one per-entry file ``<run>/headline/<model>/bfcl_<mode>.jsonl``. This module
turns a run directory into the headline: it recounts every score from those files (so the
figures are the ones anyone can recount with bfcl-eval's checkers), and it refuses — one line,
nothing written — when anything would make the table a lie:

* the final evaluation did not finish, or a per-entry file lacks, repeats or adds entries
  against the configured selection (all entries of each category unless a limit was set);
* a per-entry file disagrees with the summary written when the evaluation finished;
* an iteration's training data was not checked against BFCL, or the check found overlaps
  (the pool stage's ``bfcl_hits`` in ``manifest.json``, and a fresh check of every
  ``train_data.jsonl`` with :func:`tooldojo.bfcl_guard.check_training_rows`).

Only run-directory files are read (the manifest, summaries, JSONL), never the loop's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tooldojo.errors import DataError, ToolDojoError
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.model import RunManifest, utc_now

HEADLINE_FILE = "headline.json"
HEADLINE_DIR = "headline"
MODELS = ("base", "final")


class WallClock:
    """Wall time spent evaluating, kept in a small JSON file after every finished entry, so a
    killed run's time still counts when it resumes (``wall_s``, ``entries_evaluated``). Model
    loading is not counted: the clock starts when the entries do. Entries reused instead of
    asked (from the answer cache or another evaluation) are counted apart, with the time taken
    to copy and re-score them (``reused_entries``, ``reused_wall_s``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        prior = json.loads(path.read_text()) if path.is_file() else {}
        self.prior_s = float(prior.get("wall_s", 0.0))
        self.prior_n = int(prior.get("entries_evaluated", 0))
        self.reused_n = int(prior.get("reused_entries", 0))
        self.reused_s = float(prior.get("reused_wall_s", 0.0))
        self.new = 0
        self.started = time.perf_counter()

    def add_reused(self, entries: int, seconds: float) -> dict[str, Any]:
        """Count ``entries`` reused in ``seconds`` (before the clock's own entries start)."""
        self.reused_n += entries
        self.reused_s += seconds
        self.started = time.perf_counter()  # the reuse is timed apart, not as evaluation
        return self.tick(0)

    def tick(self, entries: int) -> dict[str, Any]:
        """Count ``entries`` more finished ones; returns (and saves) the running totals."""
        self.new += entries
        state = {
            "wall_s": round(self.prior_s + time.perf_counter() - self.started, 3),
            "entries_evaluated": self.prior_n + self.new,
            "reused_entries": self.reused_n,
            "reused_wall_s": round(self.reused_s, 3),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, self.path)
        return state


def _fail(run: Path, message: str) -> ToolDojoError:
    return ToolDojoError(f"{run}: no headline: {message}")


def _read_json(path: Path, run: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(run, f"{path} is missing") from None
    except ValueError as error:
        raise _fail(run, f"{path} is not valid JSON ({error})") from None


def _selection(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Category → entry ids the final evaluation had to cover (BFCL's own loaders)."""
    from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries

    settings = BFCLSettings(
        categories=cfg["eval"]["bfcl_categories"],
        limit=cfg["final_eval"]["limit"],
        seed=cfg["seed"],
    )
    chosen: dict[str, list[str]] = {}
    for entry in load_entries(settings):
        chosen.setdefault(entry.category, []).append(entry.id)
    return chosen


def _recount(
    run: Path, path: Path, mode: str, selection: dict[str, list[str]]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-category correct/total from one per-entry file, checked against the selection."""
    if not path.is_file():
        raise _fail(run, f"{path} is missing: the final evaluation did not run in mode {mode}")
    rows: dict[str, dict[str, Any]] = {}
    repeated: list[str] = []
    try:
        for number, row in iter_jsonl_dicts(path):
            if row.get("mode") != mode:
                where = f"{path} at line {number}"
                raise _fail(run, f"{where}: mode {row.get('mode')!r}, not {mode!r}")
            if row["id"] in rows:
                repeated.append(row["id"])
            rows[row["id"]] = row
    except DataError as error:
        raise _fail(run, str(error)) from None
    wanted = {entry_id for ids in selection.values() for entry_id in ids}
    missing = [entry_id for ids in selection.values() for entry_id in ids if entry_id not in rows]
    extra = sorted(set(rows) - wanted)
    for problem, ids in (("lacks", missing), ("repeats", repeated), ("has unselected", extra)):
        if ids:
            shown = ", ".join(ids[:3]) + (" ..." if len(ids) > 3 else "")
            raise _fail(
                run,
                f"{path} {problem} {len(ids)} of {len(wanted)} entries ({shown}): the final "
                "evaluation is incomplete; re-run the loop command to finish it",
            )
    categories = {}
    for category, ids in selection.items():
        correct = sum(bool(rows[entry_id]["valid"]) for entry_id in ids)
        categories[category] = {
            "correct": correct,
            "total": len(ids),
            "accuracy": round(correct / len(ids), 4),
        }
    formats = Counter(str(row.get("tool_format")) for row in rows.values())
    models = Counter(str(row.get("model")) for row in rows.values())
    return categories, {
        "tool_format": formats.most_common(1)[0][0],
        "model": models.most_common(1)[0][0],
        "inference_errors": sum(row.get("inference_error") is not None for row in rows.values()),
        "reused": sum(bool(row.get("reused_from")) for row in rows.values()),
        "reused_sources": dict(
            Counter(_source(row["reused_from"]) for row in rows.values() if row.get("reused_from"))
        ),
    }


def _source(reused_from: str) -> str:
    """``answer cache`` or the evaluation folder a reused answer was copied from."""
    if reused_from.startswith("answer cache"):
        return "answer cache"
    return str(Path(reused_from).parent)  # e.g. base/eval


def _overlap(run: Path, manifest: RunManifest, iterations: list[str]) -> dict[str, Any]:
    """The BFCL overlap check of every iteration's training pool: as recorded, and again."""
    from tooldojo.bfcl_guard import check_training_rows

    recorded: dict[str, int] = {}
    recheck: dict[str, int] = {}
    for name in iterations:
        record = manifest.stages.get(f"{name}/pool")
        if record is None or record.status != "done" or "bfcl_hits" not in record.counts:
            raise _fail(
                run,
                f"manifest.json has no BFCL overlap check of {name}/pool (bfcl_hits): the "
                "training data's overlap with BFCL is unknown",
            )
        recorded[name] = record.counts["bfcl_hits"]
        data = run / name / "train_data.jsonl"
        if not data.is_file():
            raise _fail(run, f"{data} is missing: the training data cannot be checked")
        recheck[name] = len(check_training_rows(row for _, row in iter_jsonl_dicts(data)))
    hits = sum(recorded.values())
    if hits or any(recheck.values()):
        raise _fail(
            run,
            f"the training data overlaps BFCL (pool stage: {recorded}, checked again now: "
            f"{recheck}); a headline needs 0",
        )
    return {"pool_stage_hits": recorded, "recheck_hits": recheck, "hits": 0, "clean": True}


def _training(run: Path, iterations: list[str]) -> dict[str, Any]:
    """What each iteration trained: trainer, samples, steps, time, what the rows held (shares
    of Python-call and no-call samples) and, for GRPO, the share of steps with reward variance."""
    out = {}
    for name in iterations:
        path = run / name / "train" / "result.json"
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
            out[name] = {
                key: result[key]
                for key in ("kind", "samples", "steps", "seconds", "data", "training")
                if key in result
            }
    return out


def _reuse_totals(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per model, over the modes: entries the model was asked in this run and the wall time
    that took, against entries reused (answer cache, the run's own samples) and the time their
    copying and re-scoring took."""
    totals: dict[str, Any] = {}
    for name in MODELS:
        rows = [models[name] for models in results.values()]
        totals[name] = {
            "computed": {
                "entries": sum(r["computed"] for r in rows),
                "wall_s": round(sum(r["wall_s"] or 0.0 for r in rows), 2),
            },
            "reused": {
                "entries": sum(r["reused"] for r in rows),
                "wall_s": round(sum(r["reused_wall_s"] or 0.0 for r in rows), 3),
                "sources": dict(sum((Counter(r["reused_sources"]) for r in rows), Counter())),
            },
        }
    return totals


def build_headline(run: str | Path) -> dict[str, Any]:
    """The headline of ``run`` (entry paths relative to the run directory); raises
    :class:`ToolDojoError` when the final evaluation is incomplete or the data is not clean."""
    run = Path(run)
    manifest_path = run / "manifest.json"
    if not manifest_path.is_file():
        raise _fail(run, "manifest.json is missing (not a loop run directory)")
    manifest = RunManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
    cfg = manifest.config.get("loop") or {}
    if not (cfg.get("final_eval") or {}).get("enabled"):
        raise _fail(run, "the run was not configured with loop.final_eval.enabled: true")
    for name in MODELS:
        record = manifest.stages.get(f"{HEADLINE_DIR}/{name}")
        status = record.status if record is not None else "not started"
        if status != "done":
            raise _fail(
                run,
                f"the final evaluation of the {name} model is {status}; re-run the loop "
                "command to finish it (finished entries are kept)",
            )
    selection = _selection(cfg)
    summaries = {name: _read_json(run / HEADLINE_DIR / name / "bfcl.json", run) for name in MODELS}
    final_spec = next(iter(summaries["final"].values()))["model_spec"]
    match = re.search(r"(iter-\d{3})[/\\]train", final_spec)
    if match is None:
        raise _fail(run, f"the final model {final_spec!r} is not an iteration's checkpoint")
    last = int(match.group(1)[5:])
    iterations = [f"iter-{k:03d}" for k in range(last + 1)]
    results: dict[str, dict[str, Any]] = {}
    benchmark = None
    for mode in cfg["eval"]["modes"]:
        results[mode] = {}
        for name in MODELS:
            summary = summaries[name].get(mode)
            if summary is None:
                raise _fail(run, f"{HEADLINE_DIR}/{name}/bfcl.json has no mode {mode}")
            benchmark = summary["benchmark"]
            entries = Path(HEADLINE_DIR) / name / f"bfcl_{mode}.jsonl"
            categories, facts = _recount(run, run / entries, mode, selection)
            for category, score in categories.items():
                written = summary["categories"].get(category, {}).get("correct")
                if written != score["correct"]:
                    raise _fail(
                        run,
                        f"{entries} holds {score['correct']} correct {category} answers but "
                        f"the summary written at the end says {written}: a file changed since",
                    )
            correct = sum(score["correct"] for score in categories.values())
            total = sum(score["total"] for score in categories.values())
            results[mode][name] = {
                "model": facts["model"],
                "tool_format": facts["tool_format"],
                "categories": categories,
                "all": {"correct": correct, "total": total, "accuracy": round(correct / total, 4)},
                "wall_s": summary.get("wall_s"),
                "entries_evaluated": summary.get("entries_evaluated"),
                "computed": total - facts["reused"],
                "reused": facts["reused"],
                "reused_sources": facts["reused_sources"],
                "reused_wall_s": summary.get("reused_wall_s"),
                "inference_errors": facts["inference_errors"],
                "entries": str(entries),
            }
    return {
        "benchmark": benchmark,
        "run": str(run),
        "created_at": utc_now(),
        "selection": {
            "categories": list(selection),
            "limit": cfg["final_eval"]["limit"],
            "seed": cfg["seed"],
            "max_tokens": cfg["eval"]["max_tokens"],
            "entries": sum(len(ids) for ids in selection.values()),
        },
        "models": {
            "base": {"spec": cfg.get("model")},
            "final": {"spec": final_spec, "iteration": iterations[-1]},
        },
        "results": results,
        "reuse": _reuse_totals(results),
        "bfcl_overlap": _overlap(run, manifest, iterations),
        "training": _training(run, iterations),
        "versions": manifest.versions,
    }


def write_headline(run: str | Path, out: str | Path | None = None) -> Path:
    """Write ``headline.json`` (default: into the run directory) after every check passed.

    Elsewhere (``out``), each per-entry file is copied beside it as
    ``<out stem>.<mode>.<model>.jsonl`` and named so in the JSON; the JSON is written last
    and atomically, so a refused or interrupted export leaves no headline behind."""
    run = Path(run)
    headline = build_headline(run)
    target = Path(out) if out is not None else run / HEADLINE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.resolve().parent != run.resolve():
        copies: list[tuple[Path, Path]] = []
        for mode, models in headline["results"].items():
            for name, result in models.items():
                copy = target.with_name(f"{target.stem}.{mode}.{name}.jsonl")
                copies.append((run / result["entries"], copy))
                result["entries"] = copy.name
        for source, copy in copies:
            tmp = copy.with_name(f".{copy.name}.tmp-{os.getpid()}")
            shutil.copyfile(source, tmp)
            os.replace(tmp, copy)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(headline, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def headline_markdown(headline: dict[str, Any]) -> str:
    """The before/after table (one row per mode and model, one column per category)."""
    categories = headline["selection"]["categories"]
    lines = [
        "| mode | model | " + " | ".join(categories) + " | all | wall time |",
        "|---|---|" + "---|" * len(categories) + "---|---|",
    ]
    for mode, models in headline["results"].items():
        for name, result in models.items():
            cells = [
                f"{s['correct']}/{s['total']} ({100 * s['accuracy']:.1f}%)"
                for s in (result["categories"][c] for c in categories)
            ]
            every = result["all"]
            wall = result.get("wall_s")
            minutes = f"{wall / 60:.1f} min" if wall is not None else "–"
            if result.get("reused"):
                minutes += f" ({result['reused']} reused)"
            row = [mode, name, *cells, f"{every['correct']}/{every['total']}", minutes]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
