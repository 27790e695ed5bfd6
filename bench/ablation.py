"""Ablation of the loop's training data: volume, GRPO and self-play, each point on full BFCL.

From one synthesized, verified training pool (every ``iter-NNN/train_data.jsonl`` of a loop
run), each point is one training run of the starting model plus BFCL's simple_python (400)
and irrelevance (240) categories in full, with the time each part took:

* ``base``: the starting model, untrained (the reference row);
* ``sft-N`` for each ``--sizes`` N: SFT on the first N trajectories of the whole pool in one
  seeded order, so the subsets are nested and only volume changes between them;
* ``sft+grpo-N`` (N the largest size): GRPO on the same data, from ``sft-N``'s checkpoint;
* ``cold-start-N0`` against ``sft-N0``: the same volume N0 (the iteration-0 data's size, at
  most the largest size), once from iteration 0 only (no self-play data), once from the whole
  pool (its ``selfplay_share`` says how much of it the self-play iterations wrote).

Training settings, model, seed and BFCL answer length come from the loop config the run used
(``loop.train.sft`` / ``grpo``, ``loop.model``, ``loop.eval``), so a point trains like the loop.
Resumable: a point's ``result.json`` is written last (a finished point is skipped), training
resumes from its Trainer checkpoints and BFCL from its per-entry files.

    python bench/ablation.py --run runs/full --config configs/full.yaml --out runs/ablation \
        --sizes 100,200,400
    # -> runs/ablation/ablation.json, ablation.md, points/<name>/...

Synthesis at ~1.5 verified trajectories/min bounds the pool: the issue's example of 1,000 to
4,000 samples is days of synthesis here; the sizes are trajectories, and each one gives several
training samples (``samples`` in the table counts them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tooldojo.errors import ToolDojoError

CATEGORIES = ["simple_python", "irrelevance"]
RESULT = "result.json"


@dataclass(frozen=True)
class Point:
    """One training run: which data (``source``: ``pool`` or ``cold-start``), how much, GRPO."""

    name: str
    size: int
    source: str = "pool"
    grpo: bool = False


@dataclass
class Pool:
    """The verified training pool, in one seeded order, each row with its first iteration."""

    rows: list[dict[str, Any]]
    iteration: dict[str, int] = field(default_factory=dict)

    @property
    def cold_start(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if self.iteration[row["id"]] == 0]

    def selfplay_share(self, rows: list[dict[str, Any]]) -> float:
        return round(sum(self.iteration[r["id"]] > 0 for r in rows) / max(len(rows), 1), 4)


def load_pool(run: Path, seed: int) -> Pool:
    """Every iteration's ``train_data.jsonl``, deduplicated by id (a hard sample carried into
    the next iteration counts once, for the iteration that first wrote it)."""
    from tooldojo.jsonl import iter_jsonl_dicts

    files = sorted(run.glob("iter-[0-9][0-9][0-9]/train_data.jsonl"))
    if not files:
        raise ToolDojoError(f"{run}: no iter-NNN/train_data.jsonl (not a loop run directory)")
    pool = Pool(rows=[])
    for path in files:
        k = int(path.parent.name[5:])
        for _, row in iter_jsonl_dicts(path):
            if row["id"] not in pool.iteration:
                pool.iteration[row["id"]] = k
                pool.rows.append(row)
    random.Random(seed).shuffle(pool.rows)
    return pool


def plan_points(pool: Pool, sizes: list[int]) -> list[Point]:
    """The ablation grid (see the module docstring); sizes above the pool are refused."""
    if not sizes or any(n < 1 for n in sizes):
        raise ToolDojoError("--sizes must be positive trajectory counts")
    if max(sizes) > len(pool.rows):
        raise ToolDojoError(
            f"--sizes {max(sizes)} exceeds the pool ({len(pool.rows)} verified trajectories)"
        )
    sizes = sorted(set(sizes))
    points = [Point("base", 0)]
    n0 = min(len(pool.cold_start), sizes[-1])
    volume = sorted(set(sizes) | ({n0} if n0 else set()))
    points += [Point(f"sft-{n}", n) for n in volume]
    points.append(Point(f"sft+grpo-{sizes[-1]}", sizes[-1], grpo=True))
    if n0 and len(pool.cold_start) < len(pool.rows):
        points.append(Point(f"cold-start-{n0}", n0, source="cold-start"))
    return points


def _rows_of(pool: Pool, point: Point) -> list[dict[str, Any]]:
    source = pool.cold_start if point.source == "cold-start" else pool.rows
    return source[: point.size]


def _evaluate(
    model: str, out: Path, modes: list[str], limit: int | None, cfg: Any
) -> dict[str, Any]:
    """simple_python and irrelevance (all entries, or ``limit`` each) in every mode."""
    import anyio

    from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, open_cache, run_bfcl
    from tooldojo.eval.headline import WallClock
    from tooldojo.eval.models import resolve_model
    from tooldojo.llm.base import run_then_close
    from tooldojo.loop._stage_eval import eval_spec

    settings = BFCLSettings(
        categories=CATEGORIES,
        limit=limit,
        seed=cfg.seed,
        concurrency=cfg.eval.concurrency,
        max_tokens=cfg.eval.max_tokens,
    )
    entries = load_entries(settings)
    results: dict[str, Any] = {}
    for mode in modes:
        evaluated = resolve_model(eval_spec(model), mode)
        clock = WallClock(out / f"timing_{mode}.json")
        cache = open_cache(evaluated, settings) if cfg.bfcl_cache.enabled else None
        run = anyio.run(
            run_then_close,
            lambda e=evaluated, m=mode, c=clock, a=cache: run_bfcl(
                e,
                out / f"bfcl_{m}.jsonl",
                settings,
                entries=entries,
                on_result=lambda r: c.tick(0 if r.reused_from else 1),
                cache=a,
            ),
            [evaluated.model],
        )
        timing = clock.tick(0)
        results[mode] = {
            "tool_format": evaluated.tool_format,
            "categories": {
                category: {key: score[key] for key in ("correct", "total", "accuracy")}
                for category, score in run.summary["categories"].items()
            },
            "eval_s": timing["wall_s"],
            "reused": run.summary["reused"],  # answers from the answer cache: not in eval_s
        }
    return results


def run_point(
    point: Point, pool: Pool, cfg: Any, out: Path, modes: list[str], limit: int | None
) -> dict[str, Any]:
    """Train (SFT, then GRPO if asked) and evaluate one point; ``result.json`` last."""
    from tooldojo.jsonl import write_jsonl_atomic
    from tooldojo.train.grpo import run_grpo
    from tooldojo.train.settings import GRPOSettings, SFTSettings
    from tooldojo.train.sft import run_sft

    folder = out / "points" / point.name
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = asdict(point)
    model = cfg.model
    train_s = 0.0
    if point.size:
        rows = _rows_of(pool, point)
        data = folder / "train_data.jsonl"
        write_jsonl_atomic(data, rows)
        record["selfplay_share"] = pool.selfplay_share(rows)
        # GRPO points start from the SFT point of the same data (trained once, shared).
        sft_dir = out / "points" / f"sft-{point.size}" / "sft" if point.grpo else folder / "sft"
        sft = run_sft(data, model, sft_dir, SFTSettings(**cfg.train.sft))
        record |= {"samples": sft.samples, "sft_steps": sft.steps, "sft_s": round(sft.seconds, 1)}
        train_s += sft.seconds
        model = str(sft.out_dir / "checkpoint")
        if point.grpo:
            grpo = run_grpo(data, model, folder / "grpo", GRPOSettings(**cfg.train.grpo))
            record |= {
                "grpo_steps": grpo.steps,
                "grpo_s": round(grpo.seconds, 1),
                "steps_with_reward_variance": grpo.training.get("steps_with_reward_variance"),
            }
            train_s += grpo.seconds
            model = str(grpo.out_dir / "checkpoint")
    started = time.perf_counter()
    record["results"] = _evaluate(model, folder / "eval", modes, limit, cfg)
    record["train_s"] = round(train_s, 1)
    record["eval_s"] = round(sum(r["eval_s"] for r in record["results"].values()), 1)
    record["total_s"] = round(record["train_s"] + record["eval_s"], 1)
    record["wall_s_this_run"] = round(time.perf_counter() - started, 1)
    tmp = folder / f".{RESULT}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / RESULT)
    return record


def markdown(records: list[dict[str, Any]], modes: list[str]) -> str:
    """One row per point: data, training and BFCL per mode, and the time each took."""
    heads = [f"{c} ({m})" for m in modes for c in CATEGORIES]
    lines = [
        "| point | trajectories | self-play share | samples | GRPO | "
        + " | ".join(heads)
        + " | train | eval |",
        "|---|---|---|---|---|" + "---|" * len(heads) + "---|---|",
    ]
    for r in records:
        cells = []
        for mode in modes:
            for category in CATEGORIES:
                score = r["results"][mode]["categories"][category]
                cells.append(f"{score['correct']}/{score['total']}")
        share = r.get("selfplay_share")
        row = [
            r["name"],
            str(r["size"]),
            "–" if share is None else f"{100 * share:.0f}%",
            str(r.get("samples", "–")),
            "yes" if r["grpo"] else "no",
            *cells,
            f"{r['train_s'] / 60:.1f} min",
            f"{r['eval_s'] / 60:.1f} min",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(
    run: Path,
    config: Path,
    out: Path,
    sizes: list[int],
    *,
    modes: list[str] | None = None,
    limit: int | None = None,
    progress: Any = print,
) -> dict[str, Any]:
    """Every point of the grid, then ``ablation.json`` and ``ablation.md`` in ``out``."""
    from tooldojo.loop.config import load_loop_config

    cfg = load_loop_config(config)
    modes = modes or ["fc"]
    pool = load_pool(run, cfg.seed)
    points = plan_points(pool, sizes)
    records = []
    for point in points:
        progress(f"ablation: {point.name} ({point.size} trajectories)")
        records.append(run_point(point, pool, cfg, out, modes, limit))
    report = {
        "run": str(run),
        "config": str(config),
        "pool": {
            "trajectories": len(pool.rows),
            "cold_start": len(pool.cold_start),
            "selfplay": len(pool.rows) - len(pool.cold_start),
        },
        "categories": CATEGORIES,
        "limit": limit,
        "modes": modes,
        "points": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("ablation.json", json.dumps(report, indent=2) + "\n"),
        ("ablation.md", markdown(records, modes)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="loop run directory (the pool)")
    parser.add_argument("--config", type=Path, required=True, help="the run's loop config")
    parser.add_argument("--out", type=Path, required=True, help="ablation directory")
    parser.add_argument("--sizes", required=True, help="trajectory counts, e.g. 100,200,400")
    parser.add_argument("--modes", default="fc", help="BFCL modes: fc, prompting or both")
    parser.add_argument("--limit", type=int, default=None, help="entries per category (test)")
    args = parser.parse_args()
    try:
        report = run_ablation(
            args.run,
            args.config,
            args.out,
            [int(n) for n in args.sizes.split(",")],
            modes=args.modes.split(","),
            limit=args.limit,
        )
    except ToolDojoError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(markdown(report["points"], report["modes"]))
    print(f"ablation in {args.out / 'ablation.json'} and {args.out / 'ablation.md'}")


if __name__ == "__main__":
    main()
