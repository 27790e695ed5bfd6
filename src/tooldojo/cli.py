"""The ``tooldojo`` command line: one sub-command per stage of the loop.

Errors caused by input (:class:`~tooldojo.errors.ToolDojoError`) print one line
naming the file and the place in it and exit with status 2, no traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import write_json_atomic

_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("tooldojo.specs.cli", "corpus_app"),
    "serve": ("tooldojo.mcp.cli", "serve_command"),
    "verify": ("tooldojo.verify.cli", "verify_command"),
    "export": ("tooldojo.verify.cli", "export_command"),
    "call": ("tooldojo.llm.cli", "call_command"),
    "train": ("tooldojo.train.cli", "train_app"),
    "synth": ("tooldojo.synth.cli", "synth_command"),
    "eval": ("tooldojo.eval.cli", "eval_app"),
    "loop": ("tooldojo.loop.cli", "loop_command"),
    "report": ("tooldojo.report.cli", "report_command"),
}
"""Sub-commands whose module is imported only when that command runs (or help lists them).

Why: importing every stage's CLI module pulls mcp, datasketch (scipy), the verifiers and more,
about a second before ``tooldojo call`` could even start loading its model."""


class _LazyGroup(TyperGroup):
    """A typer group that imports a sub-command's module the first time it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = super().list_commands(ctx)
        return [*eager, *(name for name in _LAZY_COMMANDS if name not in eager)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _LAZY_COMMANDS:
            command = _load_command(cmd_name)
            self.add_command(command, cmd_name)
        return command


def _load_command(name: str) -> click.Command:
    """The click command of a lazy sub-command (a function or a whole typer app)."""
    module_name, attribute = _LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(target, typer.Typer):
        single = typer.Typer(pretty_exceptions_enable=False)
        single.command(name)(target)
        target = single
    command = typer.main.get_command(target)
    command.name = name
    return command


app = typer.Typer(
    cls=_LazyGroup,
    name="tooldojo",
    help="Teach LLMs to call tools: synthesize, verify, train, probe and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
specs_app = typer.Typer(
    help="Ingest, inspect and convert tool specifications.", no_args_is_help=True
)
app.add_typer(specs_app, name="specs")

console = Console()
err_console = Console(stderr=True)

SpecPaths = Annotated[
    list[str],
    typer.Argument(
        help="Spec files (OpenAPI 3.0/3.1, OpenAI tools, BFCL functions, MCP tools/list), "
        "a streamable-HTTP MCP URL, or 'stdio:COMMAND ARGS' for a live MCP server.",
    ),
]
MaxMB = Annotated[float, typer.Option("--max-mb", help="Refuse spec files larger than this.")]


@specs_app.command("inspect")
def specs_inspect(
    paths: SpecPaths,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print normalized tools as JSON.")
    ] = False,
    max_mb: MaxMB = 50.0,
) -> None:
    """List the tools found in the given specs."""
    from tooldojo.specs import load_tools

    tools = load_tools(paths, max_bytes=int(max_mb * 1024 * 1024))
    if as_json:
        payload = [tool.model_dump(mode="json", exclude_none=True) for tool in tools]
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{len(tools)} tools")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("params")
    table.add_column("required")
    table.add_column("source", style="dim", overflow="fold")
    for tool in tools:
        kind, _, origin = tool.source.partition(":")
        table.add_row(
            tool.name,
            ", ".join(tool.properties),
            ", ".join(tool.required),
            f"{kind}:{Path(origin).name}" if Path(origin).is_file() else tool.source,
        )
    console.print(table)


@specs_app.command("convert")
def specs_convert(
    paths: SpecPaths,
    to: Annotated[str, typer.Option("--to", help="Target format: openai, bfcl or mcp.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output file (JSON).")],
    max_mb: MaxMB = 50.0,
) -> None:
    """Convert specs into one tool file in another format."""
    from tooldojo.specs import EXPORT_FORMATS, export_tools, load_tools

    if to not in EXPORT_FORMATS:
        raise ToolDojoError(f"--to must be one of {', '.join(EXPORT_FORMATS)}, not {to!r}")
    tools = load_tools(paths, max_bytes=int(max_mb * 1024 * 1024))
    payload = export_tools(tools, to)
    write_json_atomic(out, payload)
    err_console.print(f"wrote {len(tools)} tools as {to} to {out}")


from tooldojo.specs.cli import refine_command  # noqa: E402

specs_app.command("refine")(refine_command)


_CLICK_ERRORS = (click.ClickException, getattr(typer, "_click", click).ClickException)
"""Usage errors: typer 0.29 raises those of its vendored copy of click (``typer._click``),
which are not ``click.ClickException``s, so a wrong option printed a traceback."""


def main() -> None:
    """Console entry point: maps input errors to one line and exit status 2."""
    try:
        # Without standalone mode click turns ``typer.Exit(code)`` into a return value.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ToolDojoError as error:
        err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as error:  # click usage errors arrive here with standalone_mode=False
        if isinstance(error, _CLICK_ERRORS):
            error.show()
            sys.exit(error.exit_code)
        raise


if __name__ == "__main__":
    main()
