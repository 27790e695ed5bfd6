"""The train stage: SFT on the first iteration, GRPO after, from the last checkpoint."""

from __future__ import annotations

from pathlib import Path

from tooldojo.loop._context import LoopContext


def train_stage(context: LoopContext, it: Path, prev: Path | None, k: int) -> dict[str, int]:
    """``train/``: SFT on iteration 0 (``loop.train.first``), then ``loop.train.then``."""
    from tooldojo.train.settings import GRPOSettings, SFTSettings

    context.release_roles()  # the role models' engines are idle while training holds memory
    cfg = context.cfg.train
    kind = cfg.first if k == 0 else cfg.then
    model = context.cfg.model if prev is None else str(prev / "train" / "checkpoint")
    if kind == "sft":
        from tooldojo.train.sft import run_sft

        result = run_sft(it / "train_data.jsonl", model, it / "train", SFTSettings(**cfg.sft))
    else:
        from tooldojo.train.grpo import run_grpo

        result = run_grpo(it / "train_data.jsonl", model, it / "train", GRPOSettings(**cfg.grpo))
    return {"steps": result.steps, "samples": result.samples, "seconds": int(result.seconds)}
