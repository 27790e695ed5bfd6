"""``tooldojo verify`` and ``tooldojo export``: run the gates over a file, export what passed.

Heavy imports (jsonschema, mcp, datasets, model backends) happen inside the commands so
``tooldojo --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import write_json_atomic
from tooldojo.model import GATES

DEFAULT_GATES_OPTION = "format,schema,label,execution,request,turns"
"""``verify.pipeline.DEFAULT_GATES`` spelled out, so ``--help`` need not import the gates."""

console = Console()
err_console = Console(stderr=True)


def verify_command(
    in_path: Annotated[Path, typer.Argument(help="Trajectories (JSONL) to verify.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Verified trajectories (JSONL, appended; resumes).")
    ],
    gates: Annotated[
        str,
        typer.Option(help=f"Comma-separated gates to run, from: {', '.join(GATES)}."),
    ] = DEFAULT_GATES_OPTION,
    codec: Annotated[
        str, typer.Option(help="How assistant text without tool_calls is parsed.")
    ] = "hermes",
    mcp: Annotated[
        str | None,
        typer.Option(
            "--mcp",
            help="Executor for the execution gate: streamable-HTTP MCP URL or 'stdio:COMMAND'.",
        ),
    ] = None,
    consistency: Annotated[
        str, typer.Option(help="Recorded vs replayed results: exact, shape or none.")
    ] = "exact",
    agreement_model: Annotated[
        str | None,
        typer.Option(help="Model spec sampling the assistant for the agreement gate."),
    ] = None,
    agreement_k: Annotated[int, typer.Option(help="Samples per labelled turn.")] = 3,
    agreement_threshold: Annotated[
        float, typer.Option(help="Minimum share of samples that must match the label.")
    ] = 2 / 3,
    judge: Annotated[
        list[str] | None,
        typer.Option("--judge", help="Judge model spec (repeat for a majority vote)."),
    ] = None,
    consensus: Annotated[
        float, typer.Option(help="Share of judges the winning verdict needs.")
    ] = 0.5,
    explain: Annotated[
        str | None,
        typer.Option("--explain", help="Print why trajectory ID passed or failed, and stop."),
    ] = None,
) -> None:
    """Run verification gates over trajectories; print the funnel per gate and category."""
    import anyio

    from tooldojo.jsonl import read_jsonl
    from tooldojo.llm.base import run_then_close
    from tooldojo.model import Trajectory
    from tooldojo.verify.pipeline import VerifyOptions, funnel, verify_file, verify_trajectory

    if consistency not in ("exact", "shape", "none"):
        raise ToolDojoError(f"--consistency must be exact, shape or none, not {consistency!r}")
    options = VerifyOptions(
        gates=[g.strip() for g in gates.split(",") if g.strip()],
        codec=codec,
        consistency=consistency,  # type: ignore[arg-type]
        agreement_k=agreement_k,
        agreement_threshold=agreement_threshold,
        judge_consensus=consensus,
    )
    if mcp:
        from tooldojo.verify.execution import mcp_client_factory

        options.executor = mcp_client_factory(mcp)
    if agreement_model or judge:
        from tooldojo.llm.config import load_model

        if agreement_model:
            options.agreement_model = load_model(agreement_model)
        options.judges = [load_model(spec) for spec in judge or []]
    options.ordered_gates()
    models = [options.agreement_model, *options.judges]  # closed when their event loop ends

    if explain is not None:
        found = _find(out, explain) or _find(in_path, explain)
        if found is None:
            raise ToolDojoError(f"no trajectory with id {explain!r} in {out} or {in_path}")
        if not found.verdicts:
            found = anyio.run(run_then_close, lambda: verify_trajectory(found, options), models)
        _print_explanation(found)
        return

    def progress(trajectory: Trajectory) -> None:
        mark = "[green]pass[/]" if trajectory.passed else "[red]fail[/]"
        last = trajectory.verdicts[-1] if trajectory.verdicts else None
        why = f" at {last.gate}: {last.reason}" if last and not last.passed else ""
        err_console.print(f"{mark} {trajectory.id}{why}", highlight=False, soft_wrap=True)

    run = anyio.run(run_then_close, lambda: verify_file(in_path, out, options, progress), models)
    if run.stale is not None:
        err_console.print(
            f"{out} held verdicts of other gates, options or code: moved to {run.stale}, "
            "every trajectory verified again"
        )
    err_console.print(
        f"verified {run.verified} ({run.passed} passed), skipped {run.skipped} already in {out}"
    )
    verified = list(read_jsonl(out, Trajectory))
    _print_funnel(funnel(verified), options.ordered_gates())
    _print_summary(out, verified)


def _print_summary(out: Path, verified) -> None:  # type: ignore[no-untyped-def]
    """Failures by gate and reason, and who wrote the turns (all and passed), printed and
    written next to ``out`` as ``<name>.summary.json``."""

    from tooldojo.verify.accounting import accounting, gate_failures, grounded_share

    failures = gate_failures(verified)
    summary = {
        "trajectories": len(verified),
        "passed": sum(1 for t in verified if t.passed),
        "failures": failures,
        "accounting": accounting(verified),
        "accounting_passed": accounting(t for t in verified if t.passed),
        "grounded_requests": grounded_share(verified),
    }
    path = out.with_name(f"{out.stem}.summary.json")
    write_json_atomic(path, summary)
    table = Table(title="failures by gate and reason")
    table.add_column("gate", style="bold")
    table.add_column("reason")
    table.add_column("trajectories", justify="right")
    for gate, reasons in failures.items():
        for reason, count in reasons.items():
            table.add_row(gate, reason, str(count))
    if failures:
        console.print(table)
    origins = Table(title="who wrote the turns (passed trajectories)")
    origins.add_column("role", style="bold")
    for name in ("model", "forced", "template", "executed"):
        origins.add_column(name, justify="right")
    for role in ("user", "assistant", "tool"):
        shares = summary["accounting_passed"][role].get("shares", {})
        origins.add_row(
            role,
            *(f"{shares.get(n, 0.0):.0%}" for n in ("model", "forced", "template", "executed")),
        )
    console.print(origins)
    grounded = summary["grounded_requests"]
    if grounded["checked"]:
        err_console.print(
            f"grounded requests: {grounded['grounded']}/{grounded['checked']} "
            f"({grounded['share']:.0%}, independent check)"
        )
    err_console.print(f"summary written to {path}")


def _find(path: Path, trajectory_id: str):  # type: ignore[no-untyped-def]
    from tooldojo.jsonl import iter_jsonl_dicts
    from tooldojo.model import Trajectory

    if not path.exists():
        return None
    for _, record in iter_jsonl_dicts(path):
        if str(record.get("id")) == trajectory_id:
            return Trajectory.model_validate(record)
    return None


def _print_funnel(rows, gates: list[str]) -> None:  # type: ignore[no-untyped-def]
    table = Table(title="verification funnel (passed / reached)")
    table.add_column("category", style="bold")
    table.add_column("total", justify="right")
    for gate in gates:
        table.add_column(gate, justify="right")
    table.add_column("passed", justify="right", style="green")
    for name in sorted(rows, key=lambda n: (n == "all", n)):
        row = rows[name]
        cells = [f"{row.passed[g]}/{row.reached[g]}" if row.reached[g] else "-" for g in gates]
        table.add_row(name, str(row.total), *cells, str(row.passed_all))
    console.print(table)


def _print_explanation(trajectory) -> None:  # type: ignore[no-untyped-def]
    status = "[green]PASSED[/]" if trajectory.passed else "[red]FAILED[/]"
    console.print(f"[bold]{trajectory.id}[/] ({trajectory.category or 'no category'}): {status}")
    for verdict in trajectory.verdicts:
        mark = "[green]✓[/]" if verdict.passed else "[red]✗[/]"
        console.print(
            f"  {mark} {verdict.gate:<10} score {verdict.score:.2f}  {verdict.reason}",
            highlight=False,
            soft_wrap=True,
        )
        for line in verdict.details.get("votes", []):
            console.print(f"      {line}", highlight=False, soft_wrap=True)
        if verdict.corrected_labels:
            labels = [
                label.model_dump(mode="json", exclude_none=True)
                for label in verdict.corrected_labels
            ]
            console.print(f"      proposed labels: {labels}", highlight=False, soft_wrap=True)
    ran = {v.gate for v in trajectory.verdicts}
    if trajectory.verdicts and not trajectory.passed:
        console.print(f"  (gates after {trajectory.verdicts[-1].gate} not run)", style="dim")
    elif not ran:
        console.print("  no gate ran", style="dim")


def export_command(
    in_path: Annotated[Path, typer.Argument(help="Verified trajectories (JSONL).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="hf, trl, sharegpt or verl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (Parquet, or JSON).")],
    include_failed: Annotated[
        bool, typer.Option(help="Also export trajectories that did not pass.")
    ] = False,
    codec: Annotated[
        str, typer.Option(help="verl: how earlier calls are rendered in prompts.")
    ] = "hermes",
) -> None:
    """Export passed trajectories for training (written atomically)."""
    from tooldojo.verify.export import export_file

    count = export_file(in_path, fmt, out, include_failed=include_failed, codec=codec)
    err_console.print(f"wrote {count} row(s) as {fmt} to {out}")
