"""One iteration's stages in order, each with the inputs that decide whether a resume redoes it.

Every stage reads the files the stages before it wrote, so a stage whose inputs changed (another
starting model, another config section, new data upstream) is redone, and everything
downstream of it after it. Files are named relative to the iteration folder.
"""

from __future__ import annotations

from pathlib import Path

from tooldojo.loop._context import LoopContext
from tooldojo.loop._resume import StagePlan, spec_hashes
from tooldojo.loop._stage_eval import eval_stage
from tooldojo.loop._stage_judge import expand_stage, judge_stage, weights_stage
from tooldojo.loop._stage_pool import pool_stage, verify_stage
from tooldojo.loop._stage_probe import base_probe_stage, probe_stage
from tooldojo.loop._stage_stats import stats_stage
from tooldojo.loop._stage_synth import IMPORTED_FILES, import_synth_stage, synth_stage
from tooldojo.loop._stage_train import train_stage


def iteration_plan(context: LoopContext, k: int) -> list[StagePlan]:
    """The stages of iteration ``k``: synth, verify, pool, train, (base-probe on the first
    iteration), probe, judge, expand, weights, eval, stats."""
    cfg = context.cfg
    it = context.rundir.iteration_dir(k)
    prev = context.rundir.root / f"iter-{k - 1:03d}" if k else None
    start_model = cfg.model if prev is None else str(prev / "train" / "checkpoint")
    checkpoint = str(it / "train" / "checkpoint")
    before = f"../{prev.name}/" if prev is not None else None  # the previous iteration's folder
    plan = [
        _synth_plan(context, it, prev, k, start_model),
        StagePlan(
            "verify",
            lambda: verify_stage(context, it),
            files=["trajectories.jsonl"],
            values={"verify": cfg.verify.model_dump()},
            outputs=["verified.jsonl"],
        ),
        StagePlan(
            "pool",
            lambda: pool_stage(context, it, prev, k),
            files=["verified.jsonl", "role_calls.jsonl"]
            + (
                [before + n for n in ("train_data.jsonl", "judged.jsonl", "heldout.jsonl")]
                if before
                else []
            ),
            values={
                "heldout": cfg.synth.heldout_fraction,
                "forced_cap": cfg.selfplay.forced_cap(k),
                "seed": cfg.seed,
            }
            # only where it acts, so pools built before the option stay done
            | ({"replay": cfg.selfplay.replay} if prev is not None and cfg.selfplay.replay else {}),
            outputs=["train_data.jsonl", "heldout.jsonl", "accounting.json", "pool.json"],
        ),
        StagePlan(
            "train",
            lambda: train_stage(context, it, prev, k),
            files=["train_data.jsonl"],
            models={"start": start_model},
            values={
                "train": cfg.train.model_dump(),
                "kind": cfg.train.first if k == 0 else cfg.train.then,
            },
            outputs=["train/result.json"],
            clears=["train"],
        ),
    ]
    if k == 0:  # the starting model on the first held-out split: the "before" figures
        plan.append(
            StagePlan(
                "base-probe",
                lambda: base_probe_stage(context, it),
                files=["heldout.jsonl"],
                models={"start": cfg.model},
                values={"probe": cfg.probe.model_dump(), "seed": cfg.seed},
                outputs=["../base/probe.jsonl", "../base/probe_summary.json"],
            )
        )
    plan += [
        StagePlan(
            "probe",
            lambda: probe_stage(context, it),
            files=["train_data.jsonl", "heldout.jsonl", "train/result.json"],
            models={"checkpoint": checkpoint},
            values={"probe": cfg.probe.model_dump(), "seed": cfg.seed},
            outputs=["probe.jsonl", "probe_summary.json"],
        ),
        StagePlan(
            "judge",
            lambda: judge_stage(context, it),
            files=["probe.jsonl", "train_data.jsonl"],
            values={
                "judge": cfg.judge.model_dump(),
                "verify": cfg.verify.model_dump(),
                "roles": context.roles_identity(),
            },
            outputs=["judged.jsonl"],
        ),
        StagePlan(
            "expand",
            lambda: expand_stage(context, it, k),
            files=["judged.jsonl", "train_data.jsonl"],
            values={
                "expand": cfg.expand.model_dump(),
                "values": cfg.synth.values,
                "seed": cfg.seed,
                "roles": context.roles_identity(),
            },
            outputs=["expanded.jsonl"],
        ),
        StagePlan(
            "weights",
            lambda: weights_stage(context, it),
            files=["probe.jsonl"],
            # "splits": weights made before they left the held-out results out are redone
            values={"weights": cfg.weights.model_dump(), "splits": ["train"]},
            outputs=["weights.json"],
        ),
        StagePlan(
            "eval",
            lambda: eval_stage(context, checkpoint, it / "eval"),
            files=["train/result.json"],
            models={"checkpoint": checkpoint},
            values={"eval": cfg.eval.model_dump(), "seed": cfg.seed},
            outputs=["eval/bfcl.json"],
            clears=["eval"],
        ),
        StagePlan(
            "stats",
            lambda: stats_stage(context, it, prev),
            files=[
                "verified.jsonl",
                "accounting.json",
                "pool.json",
                "probe_summary.json",
                "probe.jsonl",
                "judged.jsonl",
                "expanded.jsonl",
                *([before + "expanded.jsonl"] if before else []),
            ],
            outputs=["loop_stats.json"],
        ),
    ]
    return plan


def _synth_plan(
    context: LoopContext, it: Path, prev: Path | None, k: int, start_model: str
) -> StagePlan:
    """Synthesis, or on iteration 0 with ``loop.synth.first_from`` the copy of a finished
    synthesis run (its files are the inputs, so new data there redoes it)."""
    cfg = context.cfg
    if k == 0 and cfg.synth.first_from:
        source = Path(cfg.synth.first_from).resolve()
        return StagePlan(
            "synth",
            lambda: import_synth_stage(source, it, partial=cfg.synth.first_from_partial),
            files=[str(source / name) for name in IMPORTED_FILES],
            # "partial" only when set, so runs from before the option keep their stage done
            values={"first_from": str(source)}
            | ({"partial": True} if cfg.synth.first_from_partial else {}),
            outputs=["trajectories.jsonl"],
            clears=["scenarios.jsonl", "dropped.jsonl", "manifest.json"],
        )
    selfplay = prev is not None and bool(cfg.selfplay.roles)
    before = f"../{prev.name}/" if prev is not None else None
    return StagePlan(
        "synth",
        lambda: synth_stage(context, it, prev, k),
        files=[before + "weights.json", before + "expanded.jsonl"] if before else [],
        models={"selfplay": start_model} if selfplay else {},
        values={
            # without first_from (iteration 0's alone): runs from before it stay done
            "synth": cfg.synth.model_dump(exclude={"first_from", "first_from_partial"}),
            "seed": cfg.seed,
            "specs": spec_hashes(context.request.specs),
            "roles": context.roles_identity(),
            "selfplay": cfg.selfplay.roles if selfplay else [],
        }
        # only when set, so runs from before the option keep their stage done
        | ({"serve_with": cfg.selfplay.serve_with} if selfplay and cfg.selfplay.serve_with else {}),
        outputs=["trajectories.jsonl"],
        clears=["scenarios.jsonl", "dropped.jsonl", "manifest.json", "role_calls.jsonl"],
    )
