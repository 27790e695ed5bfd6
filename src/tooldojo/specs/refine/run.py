"""``tooldojo specs refine``: raw sources in, a refined registry and its report out.

Stages, each timed for the report: *extract* (per spec file, in a process pool: read,
convert, strip, clean, filter, graph within the API), *name* (globally unique names),
*merge* (near-duplicates), *bfcl* (overlap with BFCL's function docs), *domains* (clusters
for tools without a category), *write*. A spec that cannot be read becomes one line of the
report; only a source that does not exist stops the run (exit 2, naming it), because then the
user asked for something else than what would be refined.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.errors import SpecError, ToolDojoError
from tooldojo.model import Tool
from tooldojo.specs._schema import sanitize_name
from tooldojo.specs.loader import DEFAULT_MAX_BYTES, load_tools
from tooldojo.specs.refine.clean import clean_description, clean_parameter_descriptions
from tooldojo.specs.refine.domains import assign_clusters
from tooldojo.specs.refine.extract import MAX_TOOLS_PER_API, FileResult, extract_file
from tooldojo.specs.refine.filters import drop_reason, strip_parameters
from tooldojo.specs.refine.graph import build_graph
from tooldojo.specs.refine.merge import DEFAULT_THRESHOLD, merge_near_duplicates
from tooldojo.specs.refine.report import RefineReport, check_funnel, count_domains, render_markdown
from tooldojo.specs.refine.schemas import SCHEMA_CHECKED, drop_bad_patterns, server_valid

SPEC_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class RefineOptions:
    workers: int = 2
    merge_threshold: float = DEFAULT_THRESHOLD
    keep_bfcl_overlaps: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_per_api: int = MAX_TOOLS_PER_API


@dataclass
class _Source:
    """One unit of work: an OpenAPI file for the pool, or a target for ``load_tools``."""

    target: str
    label: str
    openapi: bool


def expand_sources(sources: Sequence[str]) -> list[_Source]:
    """Files, folders (every spec file below, sorted), ``corpus:NAME`` or loader targets."""
    from tooldojo.specs.corpus import corpus_path

    units: list[_Source] = []
    for raw in sources:
        target = str(raw)
        if target.startswith("corpus:"):
            target = str(corpus_path(target.removeprefix("corpus:")))
        path = Path(target)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SPEC_SUFFIXES)
            if not found:
                raise ToolDojoError(f"{target}: no spec files (*.json, *.yaml) in this folder")
            units += [_Source(str(p), p.relative_to(path).as_posix(), True) for p in found]
        elif path.is_file():
            units.append(_Source(target, target, path.suffix.lower() != ".jsonl"))
        elif ":" in target and not target.startswith((".", "/")):
            units.append(_Source(target, target, False))  # pylib:, stdio:, http(s):// ...
        else:
            raise ToolDojoError(f"{target}: no such file or folder")
    return units


def _extract(unit: _Source, options: RefineOptions) -> FileResult:
    return extract_file(unit.target, unit.label, options.max_bytes, options.max_per_api)


def _run_pool(
    units: list[_Source], options: RefineOptions, progress: Callable[[int, int], None] | None
) -> Iterable[FileResult]:
    if options.workers <= 1 or len(units) < 4:
        for done, unit in enumerate(units, start=1):
            yield _extract(unit, options)
            if progress:
                progress(done, len(units))
        return
    # Largest files first so one giant spec does not finish alone at the end; results are
    # put back in input order afterwards, so the output does not depend on scheduling.
    order = sorted(range(len(units)), key=lambda i: -_size(units[i].target))
    results: dict[int, FileResult] = {}
    with ProcessPoolExecutor(max_workers=options.workers) as pool:
        mapped = pool.map(_extract, [units[i] for i in order], [options] * len(order), chunksize=2)
        for done, (index, result) in enumerate(zip(order, mapped, strict=True), start=1):
            results[index] = result
            if progress:
                progress(done, len(units))
    for index in range(len(units)):
        yield results[index]


def _size(target: str) -> int:
    try:
        return os.path.getsize(target)
    except OSError:
        return 0


def _loaded_source(unit: _Source) -> FileResult:
    """Tools from any other source the loader knows (function lists, ``pylib:``, MCP...)."""
    result = FileResult(file=unit.label)
    started = time.perf_counter()
    try:
        tools = load_tools([unit.target])
    except SpecError as error:
        result.error = " ".join(str(error).split())
        return result
    kept: list[Tool] = []
    for tool in tools:
        result.seen += 1
        tool, credentials, _ = strip_parameters(tool, set())
        result.credentials_stripped += len(credentials)
        description = clean_description(tool.description)
        reason = drop_reason(
            tool, had_description=bool(tool.description.strip()), body_media=None,
            description=description,
        )  # fmt: skip
        if reason:
            result.dropped[reason] += 1
            result.samples.setdefault(reason, tool.name)
            continue
        parameters, _ = drop_bad_patterns(tool.parameters)
        if not server_valid(parameters):
            result.dropped["invalid_schema"] += 1
            result.samples.setdefault("invalid_schema", tool.name)
            continue
        output = tool.output_schema
        if output is not None and not server_valid(output):
            output = None
        domain = tool.metadata.get("domain")
        metadata = {
            **tool.metadata,
            "source": tool.source or unit.label,
            "api": tool.source or unit.label,
            "domain": domain,
            "domain_from": "source" if domain else None,
            "schema_checked": SCHEMA_CHECKED,
        }
        kept.append(
            tool.model_copy(
                update={
                    "description": description,
                    "parameters": clean_parameter_descriptions(parameters),
                    "output_schema": output,
                    "metadata": metadata,
                }
            )
        )
    graph: dict[str, list[str]] = {}
    by_api: dict[str, list[Tool]] = {}
    for tool in kept:
        by_api.setdefault(tool.metadata["api"], []).append(tool)
    for group in by_api.values():
        graph.update(build_graph(group))
    for tool in kept:
        data = tool.model_dump(mode="json", exclude_none=True)
        data["metadata"]["graph"] = {"feeds": graph.get(tool.name, [])}
        result.tools.append(data)
    result.seconds["convert_filter"] = time.perf_counter() - started
    return result


def _api_slug(api: str) -> str:
    """``adyen.com:AccountService`` → ``adyen_AccountService``: a short, readable prefix."""
    provider, _, service = api.partition(":")
    provider = re.sub(r"\.(com|io|net|org|co|dev|app|ai|local|us|uk|de)$", "", provider)
    provider = provider.split(".")[-1] if provider.count(".") >= 1 else provider
    return sanitize_name(f"{provider}_{service}" if service else provider)


def unique_names(records: list[dict[str, Any]], files: list[str]) -> dict[tuple[str, str], str]:
    """Rename in place so names are unique across APIs; returns ``(file, old) → new``.

    A name used by one API only stays as it is; a shared name (``getUser``) gets its API's
    slug as a prefix in every API that uses it, and a number if even that repeats.
    """
    counts = Counter(r["name"] for r in records)
    taken: set[str] = set()
    renames: dict[tuple[str, str], str] = {}
    for record, file in zip(records, files, strict=True):
        old = record["name"]
        new = old
        if counts[old] > 1:
            new = sanitize_name(f"{_api_slug(record['metadata']['api'])}_{old}")
        base, n = new, 2
        while new in taken:
            new = sanitize_name(f"{base}_{n}")
            n += 1
        taken.add(new)
        record["name"] = new
        renames[(file, old)] = new
    return renames


def refine(
    sources: Sequence[str],
    out: str | Path,
    options: RefineOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    guard: Any = None,
) -> RefineReport:
    """Refine ``sources`` into ``out/registry.jsonl`` plus ``refine_report.{json,md}``."""
    options = options or RefineOptions()
    units = expand_sources(sources)
    report = RefineReport(sources=[str(s) for s in sources], files=len(units))
    seconds: Counter[str] = Counter()

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    files: list[str] = []
    openapi_units = [u for u in units if u.openapi]
    results = list(_run_pool(openapi_units, options, progress))
    other_units = [u for u in units if not u.openapi]
    # A file that turned out not to be OpenAPI gets a second chance through the loader.
    for unit, result in zip(openapi_units, results, strict=True):
        if result.error and result.error.endswith("not an OpenAPI document"):
            other_units.append(_Source(unit.target, unit.label, False))
    results = [r for r in results if not (r.error and r.error.endswith("not an OpenAPI document"))]
    results += [_loaded_source(unit) for unit in other_units]
    for result in results:
        for stage, value in result.seconds.items():
            seconds[f"extract.{stage} (summed over files)"] += value
        if result.error:
            report.unreadable.append(result.error)
            continue
        report.specs_read += 1
        report.operations_seen += result.seen
        for reason, count in result.dropped.items():
            report.dropped[reason] = report.dropped.get(reason, 0) + count
        for reason, sample in result.samples.items():
            report.drop_examples.setdefault(reason, f"{result.file}: {sample}")
        report.credentials_stripped += result.credentials_stripped
        report.plumbing_stripped += result.plumbing_stripped
        records += result.tools
        files += [result.file] * len(result.tools)
    report.kept_after_filters = len(records)
    report.seconds["extract (wall)"] = time.perf_counter() - started
    report.seconds.update(sorted(seconds.items()))

    started = time.perf_counter()
    renames = unique_names(records, files)
    report.seconds["names"] = time.perf_counter() - started

    started = time.perf_counter()
    kept, merged_into = merge_near_duplicates(records, options.merge_threshold)
    report.merged = len(merged_into)
    report.seconds["merge"] = time.perf_counter() - started

    started = time.perf_counter()
    kept, report.bfcl_overlaps, report.bfcl_guard = _bfcl_overlaps(kept, guard)
    if not options.keep_bfcl_overlaps:
        excluded = {hit["tool"] for hit in report.bfcl_overlaps}
        kept = [r for r in kept if r["name"] not in excluded]
        report.bfcl_excluded = len(excluded)
    report.seconds["bfcl"] = time.perf_counter() - started

    started = time.perf_counter()
    assign_clusters(kept)
    report.seconds["domains"] = time.perf_counter() - started

    started = time.perf_counter()
    _remap_graph(kept, records, files, renames, merged_into)
    report.graph_edges = sum(len(r["metadata"]["graph"]["feeds"]) for r in kept)
    report.tools_with_edges = sum(1 for r in kept if r["metadata"]["graph"]["feeds"])
    report.tools_written = len(kept)
    report.domains, report.domain_from = count_domains(kept)
    problems = check_funnel(report)
    if problems:
        raise RuntimeError(f"refine funnel does not add up: {'; '.join(problems)}")
    _write(Path(out), kept, report)
    report.seconds["graph+write"] = time.perf_counter() - started
    _write_reports(Path(out), report)
    return report


def _bfcl_overlaps(
    records: list[dict[str, Any]], guard: Any
) -> tuple[list[dict[str, Any]], list[dict[str, str]], str]:
    """Every record compared by content with BFCL's function docs (see ``bfcl_guard``)."""
    if guard is None:
        from tooldojo.bfcl_guard import BfclGuard

        guard = BfclGuard.load()
    hits = []
    for record in records:
        tool = Tool.model_construct(
            name=record["name"],
            description=record.get("description", ""),
            parameters=record["parameters"],
            source=record.get("source", ""),
            original_name=record.get("original_name"),
        )
        hit = guard.tool_hit(tool)
        if hit is not None:
            hits.append({"tool": record["name"], **hit.to_dict()})
    docs = getattr(guard, "size", (None, None))[0]
    version = getattr(guard, "version", None)
    note = f"Checked against {docs} BFCL function docs (bfcl-eval {version})."
    if version is None:
        note = "bfcl-eval is not installed: no BFCL overlap check was possible."
    return records, hits, note


def _remap_graph(
    kept: list[dict[str, Any]],
    records: list[dict[str, Any]],
    files: list[str],
    renames: dict[tuple[str, str], str],
    merged_into: dict[str, str],
) -> None:
    """Graph edges were named inside each file; point them at final names of kept tools.

    An edge into a merged tool goes to its representative when that is in the same API.
    """
    file_of = {r["name"]: f for r, f in zip(records, files, strict=True)}
    api_of = {r["name"]: r["metadata"]["api"] for r in records}
    alive = {r["name"] for r in kept}
    for record in kept:
        file = file_of[record["name"]]
        feeds = []
        for old in record["metadata"]["graph"]["feeds"]:
            new = renames.get((file, old), old)
            new = merged_into.get(new, new)
            same_api = api_of.get(new) == record["metadata"]["api"]
            if new in alive and same_api and new != record["name"] and new not in feeds:
                feeds.append(new)
        record["metadata"]["graph"] = {"feeds": feeds}


def _write(out: Path, records: list[dict[str, Any]], report: RefineReport) -> None:
    """The registry whole or not at all: written aside, then renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "registry.jsonl"
    tmp = out / ".registry.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    tmp.replace(target)


def _write_reports(out: Path, report: RefineReport) -> None:
    for name, text in (
        ("refine_report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"),
        ("refine_report.md", render_markdown(report)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
