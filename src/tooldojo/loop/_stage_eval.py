"""The eval stage: BFCL in every configured mode, for the starting model and each checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from tooldojo.loop._context import LoopContext, release, write_json


def eval_stage(context: LoopContext, model: str, out_dir: Path) -> dict[str, int]:
    """BFCL (configured categories, each configured mode) into ``out_dir/bfcl.json``."""
    from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, run_bfcl
    from tooldojo.eval.models import resolve_model

    cfg = context.cfg.eval
    settings = BFCLSettings(
        categories=cfg.bfcl_categories,
        limit=cfg.bfcl_limit,
        seed=context.cfg.seed,
        concurrency=cfg.concurrency,
        max_tokens=cfg.max_tokens,
    )
    scores: dict[str, Any] = {}
    counts: dict[str, int] = {}
    entries = load_entries(settings)
    for mode in cfg.modes:
        evaluated = resolve_model(eval_spec(model), mode)
        try:
            with context.bar(f"BFCL {mode} {out_dir.parent.name}", len(entries)) as advance:
                run = anyio.run(
                    lambda e=evaluated, m=mode, a=advance: run_bfcl(
                        e, out_dir / f"bfcl_{m}.jsonl", settings, entries=entries, on_result=a
                    )
                )
        finally:
            release(evaluated.model)
        scores[mode] = run.summary
        counts[mode] = len(run.results)
    write_json(out_dir / "bfcl.json", scores)
    return counts


def eval_spec(model: str) -> str:
    """The evaluation harness's spec for a loop model reference (see train.models)."""
    from tooldojo.train.models import EMBEDDED_ALIASES

    if model in EMBEDDED_ALIASES:
        return "llamacpp"
    path = Path(model)
    if path.is_dir() and not (path / "tooldojo_train.json").is_file():
        return f"transformers:{path}"  # a plain Hugging Face checkpoint (the starting model)
    return model
