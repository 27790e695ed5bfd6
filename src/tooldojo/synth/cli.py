"""``tooldojo synth``: plan scenarios over a tool registry and role-play them into trajectories.

Heavy imports (the mcp SDK, model backends, datasketch) happen inside the command so
``tooldojo --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tooldojo.errors import ToolDojoError

console = Console()
err_console = Console(stderr=True)


def synth_command(
    more_specs: Annotated[
        list[str] | None,
        typer.Argument(
            help="More spec files (so `--specs examples/specs/*` works).", show_default=False
        ),
    ] = None,
    specs: Annotated[
        list[str] | None,
        typer.Option("--specs", help="Tool spec file (repeat, or pass several after one flag)."),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Scenarios to plan.")] = 40,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")] = Path(
        "synth-out"
    ),
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            help="Category mix, e.g. 'single,parallel:2' (weights optional; default: all).",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Episodes in flight (the embedded model batches 2 x 8).")
    ] = 16,
    config: Annotated[
        Path, typer.Option("--config", help="Roles → models (tooldojo.yaml).")
    ] = Path("tooldojo.yaml"),
    executor: Annotated[
        str, typer.Option(help="Tool server executor: simulated or python:MODULE[:CLASS].")
    ] = "simulated",
    seed: Annotated[int, typer.Option(help="Seed of the plan and the episodes.")] = 0,
    min_per_tool: Annotated[
        int, typer.Option("--min-per-tool", help="Scenarios every tool must appear in.")
    ] = 1,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Assistant messages per user turn at most.")
    ] = 6,
    values: Annotated[
        str,
        typer.Option(help="Target argument values from the 'model' (constrained) or 'schema'."),
    ] = "model",
    weights: Annotated[
        Path | None,
        typer.Option(
            help='JSON {"categories": {...}, "tools": {...}, "domains": {...}} weights '
            "(from the loop; domains: a refined registry's metadata.domain)."
        ),
    ] = None,
    dedup: Annotated[
        float, typer.Option(help="Drop requests this similar (MinHash Jaccard); 0 = off.")
    ] = 0.9,
    constrain: Annotated[
        bool, typer.Option(help="Constrain the assistant's calls to the tools' schemas.")
    ] = True,
    guidance: Annotated[
        str,
        typer.Option(
            help="What the assistant learns of the planned label: none, kind (whether "
            "to call) or label (teacher-force steps it gets wrong)."
        ),
    ] = "kind",
    failure_rate: Annotated[
        float, typer.Option(help="Share of simulated tool calls that fail realistically.")
    ] = 0.0,
    max_failures: Annotated[
        int, typer.Option(help="Stop after this many failed episodes in a row.")
    ] = 10,
    template_cap: Annotated[
        float,
        typer.Option(
            help="Most share of episodes whose user turn may be templated when the user "
            "model cannot write it; above it the scenario is dropped."
        ),
    ] = 0.10,
    plan_only: Annotated[
        bool, typer.Option("--plan-only", help="Write scenarios.jsonl and stop.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes that play the plan side by side, each with its own models and "
            "--concurrency episodes (for machines with many cores or a GPU; 1: this process).",
        ),
    ] = 1,
) -> None:
    """Role-play labelled tool-calling episodes: user simulator ⇄ assistant ⇄ MCP server."""
    import anyio
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared

    if values not in ("model", "schema"):
        raise ToolDojoError(f"--values must be model or schema, not {values!r}")
    if n < 1:
        raise ToolDojoError("--n must be at least 1")
    if workers < 1:
        raise ToolDojoError("--workers must be at least 1")
    if not 0.0 <= template_cap <= 1.0:
        raise ToolDojoError(f"--template-cap must be between 0 and 1, not {template_cap}")
    request = SynthRequest(
        specs=[*(specs or []), *(more_specs or [])],
        n=n,
        out=out,
        categories=categories or [],
        concurrency=concurrency,
        config=config,
        executor=executor,
        seed=seed,
        min_per_tool=min_per_tool,
        max_steps=max_steps,
        values=values,
        weights=_read_weights(weights),
        dedup=dedup,
        constrain=constrain,
        guidance=guidance,
        failure_rate=failure_rate,
        max_failures=max_failures,
        template_cap=template_cap,
    )

    async def plan_and_play() -> Any:
        # One event loop for both: a remote model's HTTP connections belong to the loop
        # that opened them, and drafting values (--values model) already calls the model.
        with Progress(
            TextColumn("[bold]planning[/] {task.completed} scenarios"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            task = progress.add_task("plan", total=None)
            prepared = await prepare_run(request, lambda _: progress.advance(task))
        try:
            for warning in prepared.warnings:
                err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
            err_console.print(
                f"{len(prepared.scenarios)} scenarios over {len(prepared.tools)} tools "
                f"({'reused' if prepared.reused_plan else 'planned'}) in {out}",
                highlight=False,
            )
            return None if plan_only else await _run_with_progress(prepared, run_prepared)
        finally:
            await prepared.aclose()

    try:
        if workers > 1 and not plan_only:
            summary = _run_workers(request, workers)
        else:
            summary = anyio.run(plan_and_play)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: finished episodes are saved; re-run the same command to resume"
        )
        raise typer.Exit(130) from None
    if summary is None:
        return
    _print_summary(summary)
    _print_engines(out)
    if summary.aborted:
        err_console.print(f"[red]error:[/] {summary.aborted}", highlight=False, soft_wrap=True)
    for line in summary.errors[:5]:
        err_console.print(f"[red]failed[/] {line}", highlight=False, soft_wrap=True)
    if summary.aborted or summary.total("failed"):
        err_console.print("finished episodes are saved; re-run the same command to resume")
        raise typer.Exit(1)


def _read_weights(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolDojoError(f"{path}: weights file not found") from None
    except json.JSONDecodeError as error:
        raise ToolDojoError(f"{path} at line {error.lineno}: invalid JSON") from None
    if not isinstance(data, dict) or not set(data) <= {"categories", "tools", "domains"}:
        raise ToolDojoError(
            f'{path}: expected {{"categories": {{...}}, "tools": {{...}}, "domains": {{...}}}}'
        )
    for key, value in data.items():
        if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and v >= 0 for v in value.values()
        ):
            raise ToolDojoError(f"{path} at {key}: weights must be non-negative numbers")
    return data


def _progress(title: str, *fields: str) -> Any:
    """The synth progress bar: ``title``, the bar, done of total, ``fields`` (task field
    templates), elapsed and remaining time; on stderr, left on screen when it ends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(field) for field in fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


async def _run_with_progress(prepared: Any, run_prepared: Any) -> Any:
    from tooldojo.synth.runner import Failed

    todo = prepared.pending_count()
    failed = 0
    with _progress("[bold]synth[/]", "failed {task.fields[failed]}", "{task.fields[rate]}") as bar:
        task = bar.add_task("synth", total=todo, failed=0, rate="")

        def tick(outcome: Any) -> None:
            nonlocal failed
            failed += isinstance(outcome, Failed)
            elapsed = bar.tasks[0].elapsed or 0.0
            done = bar.tasks[0].completed + 1
            rate = f"{done / elapsed:.2f} ep/s" if elapsed > 0 else ""
            bar.update(task, advance=1, failed=failed, rate=rate)

        return await run_prepared(prepared, tick)


def _run_workers(request: Any, workers: int) -> Any:
    """``--workers``: plan here, play in worker processes, with one progress bar over them."""
    from tooldojo.synth.workers import run_with_workers

    with _progress(f"[bold]synth[/] ({workers} workers)") as bar:
        task = bar.add_task("synth", total=None)

        def show(done: int, pending: int) -> None:
            bar.update(task, completed=done, total=pending)

        return run_with_workers(request, workers, show)


def _print_engines(out: Path) -> None:
    """One line per local engine pool: the tokens it computed while the episodes ran."""
    from tooldojo.synth.pipeline import synth_manifest

    engines = synth_manifest(out)["stages"]["synth"].get("engines") or {}
    for roles, work in engines.items():
        console.print(
            f"engine ({roles}): {work['computed_tokens']:,} tokens computed "
            f"({work['generated_tokens']:,} generated, {work['reused_tokens']:,} prompt tokens "
            f"reused), {work['computed_tokens_per_s']} computed tokens/s, "
            f"{work['generated_tokens_per_s']} generated/s; {work['loop_stops']} loops cut, "
            f"{work['length_stops']} at max_tokens",
            highlight=False,
        )


def _print_summary(summary: Any) -> None:
    table = Table(title="synthesis")
    for column in ("category", "planned", "finished", "failed", "dropped", "skipped", "tokens"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for name in sorted(summary.rows):
        row = summary.rows[name]
        table.add_row(
            name,
            *(
                str(getattr(row, f))
                for f in ("planned", "finished", "failed", "dropped", "skipped", "tokens")
            ),
        )
    table.add_row(
        "[bold]all[/]",
        *(
            str(summary.total(f))
            for f in ("planned", "finished", "failed", "dropped", "skipped", "tokens")
        ),
    )
    console.print(table)
