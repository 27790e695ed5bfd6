"""The probe stages: greedy answers of the trained model (and, once, of the starting model on
the held-out split) to the labelled turns."""

from __future__ import annotations

from pathlib import Path

from tooldojo.jsonl import read_jsonl
from tooldojo.llm.base import ChatModel
from tooldojo.loop._context import LoopContext, release, write_json
from tooldojo.loop._stage_eval import eval_spec
from tooldojo.model import Trajectory


def probe_model(checkpoint: Path) -> ChatModel:
    """The trained model for probing: llama.cpp on its GGUF when exported, else transformers."""
    from tooldojo.llm.config import load_model

    gguf = checkpoint.parent / "model.gguf"
    if gguf.is_file():
        return load_model(f"llamacpp:{gguf}")
    return load_model(f"transformers:{checkpoint}")


def probe_stage(context: LoopContext, it: Path) -> dict[str, int]:
    """The new checkpoint on the training pool and the held-out split."""
    pools = {
        "train": list(read_jsonl(it / "train_data.jsonl", Trajectory)),
        "heldout": list(read_jsonl(it / "heldout.jsonl", Trajectory)),
    }
    model = probe_model(it / "train" / "checkpoint")
    try:
        return _probe_into(context, model, pools, it)
    finally:
        release(model)


def base_probe_stage(context: LoopContext, it: Path) -> dict[str, int]:
    """The starting model on the first held-out split: the "before" of the held-out figures."""
    model = context.cfg.model
    if (Path(model) / "tooldojo_train.json").is_file():
        base = probe_model(Path(model))
    else:
        from tooldojo.llm.config import load_model

        spec = eval_spec(model)
        base = load_model(f"llamacpp:{model}" if spec.endswith(".gguf") else spec)
    pools = {"heldout": list(read_jsonl(it / "heldout.jsonl", Trajectory))}
    try:
        return _probe_into(context, base, pools, context.rundir.root / "base")
    finally:
        release(base)


def _probe_into(
    context: LoopContext, model: ChatModel, pools: dict[str, list[Trajectory]], folder: Path
) -> dict[str, int]:
    from tooldojo.loop.probe import ProbeRecord, accuracy_table, run_probe

    cfg = context.cfg.probe
    folder.mkdir(parents=True, exist_ok=True)
    with context.bar(f"{folder.name} probe", None) as advance:
        counts = context.run(
            lambda: run_probe(
                model,
                pools,
                folder / "probe.jsonl",
                limit=cfg.max_samples,
                seed=context.cfg.seed,
                max_tokens=cfg.max_tokens,
                concurrency=cfg.concurrency,
                progress=advance,
            )
        )
    write_json(
        folder / "probe_summary.json",
        accuracy_table(read_jsonl(folder / "probe.jsonl", ProbeRecord), sample=counts),
    )
    return counts
