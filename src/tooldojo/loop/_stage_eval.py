"""The eval stage: BFCL in every configured mode, for the starting model and each checkpoint;
and, after the last iteration, the final (full) evaluation behind ``headline.json``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, existing_ids, iter_jsonl_dicts
from tooldojo.loop._context import LoopContext, release, write_json
from tooldojo.loop.rundir import model_identity, stage_inputs, value_hash


def eval_stage(context: LoopContext, model: str, out_dir: Path) -> dict[str, int]:
    """BFCL (configured categories, each configured mode) into ``out_dir/bfcl.json``."""
    return _evaluate(
        context, model, out_dir, context.cfg.eval.bfcl_limit, label=out_dir.parent.name
    )


def _evaluate(
    context: LoopContext,
    model: str,
    out_dir: Path,
    limit: int | None,
    *,
    label: str,
    reuse: Path | None = None,
    timed: bool = False,
) -> dict[str, int]:
    """BFCL over ``limit`` entries per category in every mode of ``loop.eval``. With ``reuse``
    (an evaluation folder of the same model and settings), its answers to selected entries are
    copied in first instead of asked again; then, with ``loop.bfcl_cache`` on, the answer
    cache's (any earlier run of the same model and settings). With ``timed``,
    ``timing_<mode>.json`` keeps the wall time spent evaluating and the time and count of the
    reused entries, summed over resumes."""
    import time

    from tooldojo.eval.bfcl_runner import (
        BFCLSettings,
        load_entries,
        open_cache,
        reuse_cached,
        run_bfcl,
    )
    from tooldojo.eval.headline import WallClock
    from tooldojo.eval.models import resolve_model

    cfg = context.cfg.eval
    settings = BFCLSettings(
        categories=cfg.bfcl_categories,
        limit=limit,
        seed=context.cfg.seed,
        concurrency=cfg.concurrency,
        max_tokens=cfg.max_tokens,
    )
    scores: dict[str, Any] = {}
    counts: dict[str, int] = {}
    entries = load_entries(settings)
    for mode in cfg.modes:
        evaluated = resolve_model(eval_spec(model), mode)
        path = out_dir / f"bfcl_{mode}.jsonl"
        try:
            started = time.perf_counter()
            reused = 0
            if reuse is not None:
                wanted = {entry.id for entry in entries}
                reused = _reuse_answers(reuse / f"bfcl_{mode}.jsonl", path, evaluated, wanted)
            cache = open_cache(evaluated, settings) if context.cfg.bfcl_cache.enabled else None
            if cache is not None:
                reused += reuse_cached(cache, evaluated, path, entries)
            clock = WallClock(out_dir / f"timing_{mode}.json") if timed else None
            if clock is not None:
                clock.add_reused(reused, time.perf_counter() - started)
            # The bar counts what is left to ask: reused and resumed answers are already in.
            answered = len(existing_ids(path) & {entry.id for entry in entries})
            with context.bar(f"BFCL {mode} {label}", len(entries) - answered) as advance:

                def on_result(result: Any, advance: Any = advance, clock: Any = clock) -> None:
                    advance()
                    if clock is not None:
                        clock.tick(1)

                run = anyio.run(
                    lambda e=evaluated, p=path, cb=on_result, c=cache: run_bfcl(
                        e, p, settings, entries=entries, on_result=cb, cache=c, reuse_cache=False
                    )
                )
            timing = clock.tick(0) if clock is not None else {}  # before the model's release
        finally:
            release(evaluated.model)
        scores[mode] = run.summary | timing
        if reused:
            context.say(f"BFCL {mode} {label}: {reused} of {len(entries)} answers reused")
        counts[mode] = len(run.results)
    write_json(out_dir / "bfcl.json", scores)
    return counts


def _reuse_answers(source: Path, target: Path, evaluated: Any, wanted: set[str]) -> int:
    """Copy ``source``'s results for ``wanted`` entries that ``target`` lacks (same model, mode
    and tool format only); each copied line names where it came from (``reused_from``)."""
    if not source.is_file():
        return 0
    have = existing_ids(target)
    origin = f"{source.parent.parent.name}/{source.parent.name}"  # e.g. iter-002/eval
    rows = []
    for _, row in iter_jsonl_dicts(source):
        same = (row.get("model"), row.get("mode"), row.get("tool_format")) == (
            evaluated.name,
            evaluated.mode,
            evaluated.tool_format,
        )
        if same and row.get("id") in wanted and row["id"] not in have:
            rows.append(row | {"reused_from": f"{origin}/{source.name}"})
            have.add(row["id"])
    append_jsonl(target, rows, batch=True)
    return len(rows)


def final_checkpoint(context: LoopContext) -> tuple[str, str] | None:
    """(iteration folder name, checkpoint) of the last iteration whose training finished."""
    done = [
        int(match.group(1))
        for key, record in context.rundir.manifest.stages.items()
        if (match := re.fullmatch(r"iter-(\d{3})/train", key)) and record.status == "done"
    ]
    done = [k for k in done if k < context.request.iterations]
    if not done:
        return None
    name = f"iter-{max(done):03d}"
    return name, str(context.rundir.root / name / "train" / "checkpoint")


def final_eval(context: LoopContext) -> None:
    """``loop.final_eval``: the starting model and the final checkpoint on every selected entry
    (stages ``headline/base`` and ``headline/final``), then ``headline.json``."""
    from tooldojo.eval.headline import HEADLINE_DIR, write_headline
    from tooldojo.loop._resume import run_stage

    root = context.rundir.root
    last = final_checkpoint(context)
    if last is None:
        context.say("headline: no iteration finished training; no final evaluation")
        return
    iteration, checkpoint = last
    cfg = context.cfg
    values = {
        "eval": cfg.eval.model_dump(include={"bfcl_categories", "modes", "max_tokens"}),
        "limit": cfg.final_eval.limit,
        "seed": cfg.seed,
    }
    for name, model, source in (
        ("base", cfg.model, "base/eval"),
        ("final", checkpoint, f"{iteration}/eval"),
    ):
        out = root / HEADLINE_DIR / name
        reuse = root / source if _same_evaluation(context, source, model) else None
        run_stage(
            context,
            f"{HEADLINE_DIR}/{name}",
            lambda m=model, o=out, r=reuse, n=name: _evaluate(
                context, m, o, cfg.final_eval.limit, label=f"headline {n}", reuse=r, timed=True
            ),
            inputs=stage_inputs([], root=root, models={"model": model}, **values),
            outputs=[out / "bfcl.json"],
            clears=[out],
        )
    try:
        path = write_headline(root)
    except ToolDojoError as why:
        context.say(f"headline: not written: {why}")
    else:
        context.say(f"headline: {path}")


def _same_evaluation(context: LoopContext, key: str, model: str) -> bool:
    """Whether stage ``key`` evaluated ``model`` with today's ``loop.eval`` and seed (so its
    answers are the ones the final evaluation would get)."""
    if not context.rundir.is_done(key):
        return False
    inputs = context.rundir.manifest.stages[key].inputs
    models = [value for name, value in inputs.items() if name.startswith("@model:")]
    return (
        inputs.get("@eval") == value_hash(context.cfg.eval.model_dump())
        and inputs.get("@seed") == value_hash(context.cfg.seed)
        and models == [model_identity(model)]
    )


def eval_spec(model: str) -> str:
    """The evaluation harness's spec for a loop model reference (see train.models)."""
    from tooldojo.train.models import EMBEDDED_ALIASES

    if model in EMBEDDED_ALIASES:
        return "llamacpp"
    path = Path(model)
    if path.is_dir() and not (path / "tooldojo_train.json").is_file():
        return f"transformers:{path}"  # a plain Hugging Face checkpoint (the starting model)
    return model
