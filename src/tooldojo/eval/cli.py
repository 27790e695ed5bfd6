"""``tooldojo eval bfcl`` and ``tooldojo eval synthetic`` (see docs/eval.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tooldojo.jsonl import write_json_atomic

eval_app = typer.Typer(
    help="Score a model on BFCL (official data and checkers) or on held-out synthetic data.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="Backend spec (llamacpp, llamacpp:X.gguf, openai:MODEL@URL, transformers:DIR), "
        "a backend named in --config, a tooldojo checkpoint (directory with "
        "tooldojo_train.json, or its model.gguf), or 'oracle' (BFCL's ground truth: a check "
        "of the harness).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="tooldojo.yaml whose 'backends' --model may name (pool size, threads, URLs, "
        "server-specific request fields).",
    ),
]


def _llm_config(path: Path | None):  # type: ignore[no-untyped-def]
    from tooldojo.llm.config import load_config

    return load_config(path) if path is not None else None


def _entries_path(out: Path, entries: Path | None, suffix: str) -> Path:
    return entries if entries is not None else out.with_name(f"{out.stem}.{suffix}.jsonl")


@eval_app.command("bfcl")
def bfcl_command(
    model: ModelOption = "llamacpp",
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            "-c",
            help="Categories or groups (all, non_live, live, multi_turn, single_turn, ast, "
            "python); repeat or separate with commas. Default: all.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Deterministic sample of N entries per category.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
    mode: Annotated[
        str | None,
        typer.Option(help="prompting or fc (default: chosen from the backend, see docs)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Summary JSON.")] = Path("bfcl.json"),
    entries: Annotated[
        Path | None,
        typer.Option(help="Per-entry results JSONL (default: OUT's name with .entries.jsonl)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Entries in flight (the embedded model batches 2 x 8).")
    ] = 16,
    max_tokens: Annotated[int, typer.Option(help="Token budget of one model answer.")] = 512,
    n_ctx: Annotated[int, typer.Option(help="Context window of local models.")] = 8192,
    config: ConfigOption = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Reuse answers this model gave before under the same settings, and store new "
            "ones ($TOOLDOJO_CACHE/bfcl; see docs/eval.md).",
        ),
    ] = True,
) -> None:
    """Score a model on BFCL's data with BFCL's checkers; resumes an interrupted run."""
    import anyio
    from rich.progress import Progress

    from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, open_cache, run_bfcl
    from tooldojo.eval.models import resolve_model
    from tooldojo.eval.report import bfcl_table
    from tooldojo.llm.base import run_then_close

    settings = BFCLSettings(
        categories=categories,
        limit=limit,
        seed=seed,
        concurrency=concurrency,
        max_tokens=max_tokens,
    )
    selected = load_entries(settings)
    evaluated = resolve_model(model, mode, n_ctx=n_ctx, config=_llm_config(config))
    entries_path = _entries_path(out, entries, "entries")
    answers = open_cache(evaluated, settings) if cache else None
    err_console.print(f"BFCL: {len(selected)} entries · {evaluated.name} · {evaluated.description}")
    if answers is not None:
        err_console.print(f"answer cache: {answers.path} ({len(answers)} answers stored)")
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(selected))
        progress.advance(task, sum(1 for _ in _done_ids(entries_path, selected)))
        run = anyio.run(
            run_then_close,
            lambda: run_bfcl(
                evaluated,
                entries_path,
                settings,
                entries=selected,
                on_result=lambda _: progress.advance(task),
                cache=answers,
            ),
            [evaluated.model],
        )
    write_json_atomic(out, run.summary)
    console.print(bfcl_table(run.summary))
    failures = sum(v["inference_errors"] for v in run.summary["categories"].values())
    if failures:
        err_console.print(f"[yellow]warning:[/] {failures} entries failed at inference time")
    err_console.print(
        f"{run.new} entries evaluated, {run.reused} reused from the answer cache, "
        f"{run.skipped - run.reused} resumed from {entries_path}; "
        f"summary in {out} ({run.summary['elapsed_s']} s)"
    )


def _done_ids(path: Path, selected: list) -> list[str]:  # type: ignore[type-arg]
    from tooldojo.jsonl import existing_ids

    wanted = {entry.id for entry in selected}
    return [entry_id for entry_id in existing_ids(path) if entry_id in wanted]


@eval_app.command("synthetic")
def synthetic_command(
    data: Annotated[Path, typer.Option("--data", help="verified.jsonl (uses split == heldout).")],
    model: ModelOption = "llamacpp",
    out: Annotated[Path, typer.Option("--out", "-o", help="Summary JSON.")] = Path(
        "synthetic.json"
    ),
    entries: Annotated[
        Path | None, typer.Option(help="Per-turn results JSONL (default: beside OUT).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most N held-out trajectories.")] = None,
    concurrency: Annotated[int, typer.Option(help="Turns in flight at once.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Token budget of one model answer.")] = 512,
    n_ctx: Annotated[int, typer.Option(help="Context window of local models.")] = 8192,
    config: ConfigOption = None,
) -> None:
    """Score a model on held-out turns of our own data with verification's gates."""
    import anyio
    from rich.table import Table

    from tooldojo.eval.models import resolve_model
    from tooldojo.eval.synthetic import SyntheticSettings, run_synthetic
    from tooldojo.llm.base import run_then_close

    evaluated = resolve_model(model, "fc", n_ctx=n_ctx, config=_llm_config(config))
    settings = SyntheticSettings(concurrency=concurrency, max_tokens=max_tokens, limit=limit)
    results_path = _entries_path(out, entries, "turns")
    summary = anyio.run(
        run_then_close,
        lambda: run_synthetic(evaluated, data, results_path, settings),
        [evaluated.model],
    )
    write_json_atomic(out, summary)
    table = Table(title=f"held-out · {summary['model']} · {summary['mode']}")
    table.add_column("category / kind", style="bold cyan")
    table.add_column("accuracy", justify="right")
    table.add_column("passed / total", justify="right")
    table.add_column("failed gates")

    def row(name: str, score: dict[str, Any]) -> None:
        gates = ", ".join(f"{gate} ×{n}" for gate, n in score["failed_gates"].items())
        share = "–" if score["accuracy"] is None else f"{100 * score['accuracy']:.1f}%"
        table.add_row(name, share, f"{score['passed']} / {score['total']}", gates)

    for category, kinds in summary["categories"].items():
        for kind, score in kinds.items():
            row(f"{category} / {kind}", score)
    table.add_section()
    for kind, score in summary["kinds"].items():
        row(f"all {kind} turns", score)
    console.print(table)
    err_console.print(f"summary in {out}, per-turn results in {results_path}")


@eval_app.command("headline")
def headline_command(
    run: Annotated[Path, typer.Argument(help="A loop run directory with loop.final_eval on.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write headline.json (default: into RUN); the per-entry files are "
            "copied beside it as <stem>.<mode>.<model>.jsonl.",
        ),
    ] = None,
) -> None:
    """Check a run's final evaluation and write headline.json (refused when incomplete)."""
    from tooldojo.eval.headline import headline_markdown, write_headline

    path = write_headline(run, out)
    headline = json.loads(path.read_text(encoding="utf-8"))
    console.print(headline_markdown(headline), markup=False)
    limit = headline["selection"]["limit"]
    if limit is not None:
        err_console.print(f"[yellow]note:[/] a sample of {limit} entries per category, not all")
    overlap = headline["bfcl_overlap"]
    err_console.print(
        f"BFCL overlap of the training data: {overlap['hits']} hits "
        f"({len(overlap['pool_stage_hits'])} iterations checked); headline in {path}"
    )
