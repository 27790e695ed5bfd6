"""``tooldojo loop`` (``tooldojo report`` lives in :mod:`tooldojo.report.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def loop_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory, e.g. runs/NAME.")],
    specs: Annotated[
        list[str] | None, typer.Option("--specs", help="Spec files: --specs a.yaml b.json ...")
    ] = None,
    more_specs: Annotated[
        list[str] | None, typer.Argument(help="More spec files (so --specs a b c works).")
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="Loop iterations.")] = 1,
    config: Annotated[
        Path, typer.Option("--config", help="tooldojo.yaml: roles, backends and loop sizes.")
    ] = Path("tooldojo.yaml"),
) -> None:
    """Synthesize, verify, train, probe, judge, expand and evaluate; resumable."""
    from rich.console import Console

    from tooldojo.loop.config import load_loop_config
    from tooldojo.loop.controller import LoopRequest, run_loop

    console = Console(stderr=True)
    rundir = run_loop(
        LoopRequest(
            specs=[*(specs or []), *(more_specs or [])],
            run=run,
            iterations=iterations,
            config=load_loop_config(config),
            config_path=config if config.exists() else None,
            progress=lambda line: console.print(f"[bold cyan]loop[/] {line}"),
            show_progress=True,
        )
    )
    console.print(f"report: {rundir.root / 'report.html'}")
