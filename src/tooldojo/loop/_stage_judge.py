"""The judge, expand and weights stages: decide each probe failure (label or model wrong), grow
new scenarios from the model's errors, and weight categories and tools for the next iteration."""

from __future__ import annotations

from pathlib import Path

from tooldojo.jsonl import read_jsonl
from tooldojo.loop._context import LoopContext, write_json
from tooldojo.model import Trajectory


def judge_stage(context: LoopContext, it: Path) -> dict[str, int]:
    """``judged.jsonl``: the judges' majority on each probe failure of the training pool."""
    from tooldojo.loop.judge import run_judge
    from tooldojo.verify.pipeline import VerifyOptions

    cfg = context.cfg.judge
    judges = [context.model_for(name) for name in cfg.judges]
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    out = it / "judged.jsonl"
    with context.bar(f"{it.name} judge", None) as advance:
        counts = context.run(
            lambda: run_judge(
                judges,
                it / "probe.jsonl",
                pool,
                out,
                max_cases=cfg.max_cases,
                samples=cfg.samples,
                temperature=cfg.temperature,
                gates=VerifyOptions(gates=context.cfg.verify.gates),
                progress=advance,
            )
        )
    out.touch()
    return counts


def expand_stage(context: LoopContext, it: Path, k: int) -> dict[str, int]:
    """``expanded.jsonl``: new scenarios conditioned on each verified model error."""
    from tooldojo.loop.expand import run_expand
    from tooldojo.synth.labels import ArgumentDrafter

    cfg = context.cfg.expand
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    drafter = ArgumentDrafter(
        context.model_for("user") if context.cfg.synth.values == "model" else None
    )
    out = it / "expanded.jsonl"
    counts = context.run(
        lambda: run_expand(
            it / "judged.jsonl",
            pool,
            out,
            per_error=cfg.per_error,
            max_total=cfg.max_total,
            iteration=k,
            seed=context.cfg.seed,
            drafter=drafter,
        )
    )
    out.touch()
    return counts


def weights_stage(context: LoopContext, it: Path) -> dict[str, int]:
    """``weights.json``: category and tool weights for the next iteration's planner."""
    from tooldojo.loop.probe import ProbeRecord
    from tooldojo.loop.weights import next_weights

    weights = next_weights(read_jsonl(it / "probe.jsonl", ProbeRecord), context.cfg.weights.floor)
    write_json(it / "weights.json", weights)
    return {"categories": len(weights["categories"]), "tools": len(weights["tools"])}
