"""One synthesis run over several worker processes (``tooldojo synth --workers K``).

Why processes: an episode's own work (the agents, the gates, the MCP round trips, sampling
from the logits) is Python and holds the GIL. On two cores the model's compute dwarfs it, but
on a machine with many cores, or a GPU that computes a step of the 135M model in milliseconds,
one process tops out on that Python work while the other cores idle.

How: the parent plans the run as a single process would (``scenarios.jsonl`` and the manifest),
then starts ``K`` processes that each load the models and play the scenarios a stable hash of
their id gives them (:func:`~tooldojo.synth.runner.worker_of`), appending to files of their
own under ``workers/<i>/`` so that a killed worker can never leave a cut line in the middle of
the shared file. The parent merges those files into ``trajectories.jsonl`` and
``dropped.jsonl`` when the workers end, and before it starts any (what a killed run left);
a merge skips ids already there, so a kill during it loses and duplicates nothing. The
manifest is the parent's alone: one stage record, its wall time, the outcome counts and the
engines' work summed over the workers.

The near-duplicate filter sees the run's merged episodes and the worker's own, not the other
workers' episodes of the same session: near-duplicates across workers are left to the verify
stage's own dedup.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import write_json_atomic
from tooldojo.synth.interrupt import Terminated
from tooldojo.synth.pipeline import (
    MANIFEST_EVERY_S,
    SynthRequest,
    engine_counters,
    engine_work,
    finish_stage,
    mark_interrupted,
    play_until_sigterm,
    prepare_run,
    start_stage,
    write_manifest,
)
from tooldojo.synth.runner import (
    DROPPED,
    TRAJECTORIES,
    CategoryCounts,
    SynthSummary,
    merge_worker_files,
    worker_dir,
)

SUMMARY = "summary.json"
EXIT_TERMINATED = 2


def run_with_workers(
    request: SynthRequest,
    workers: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Plan ``request`` here, play it in ``workers`` processes, merge, and record the stage.

    ``on_progress(done, pending)`` is called about once a second with the episodes the
    workers have finished this session. Raises :class:`Terminated` when the parent or a
    worker was stopped by SIGTERM (finished episodes are kept and merged), and
    :class:`ToolDojoError` when a worker died.
    """
    if workers < 2:
        raise ToolDojoError("--workers must be at least 2 to use worker processes")
    if request.models is not None:
        raise ToolDojoError("worker processes load their models from --config, not in memory")
    out = request.out
    prepared = anyio.run(_plan, request)
    merge_worker_files(out)
    pending = prepared.pending_count()
    account = start_stage(prepared)
    context = multiprocessing.get_context("spawn")  # no forked copy of loaded models or threads
    processes = [
        context.Process(target=_worker_main, args=(request, index, workers), daemon=False)
        for index in range(workers)
    ]
    stopped: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: stopped.append(signum))
    try:
        for process in processes:
            process.start()
        flushed = time.monotonic()
        counter = _LineCounter([worker_dir(out, index) for index in range(workers)])
        while any(process.is_alive() for process in processes):
            if stopped:
                for process in processes:
                    if process.is_alive() and process.pid is not None:
                        process.terminate()  # SIGTERM: each worker keeps what finished
                stopped.clear()
            for process in processes:
                process.join(timeout=1.0 / workers)
            if on_progress is not None:
                on_progress(counter.count(), pending)
            if time.monotonic() - flushed >= MANIFEST_EVERY_S:
                flushed = time.monotonic()
                account()
                write_manifest(prepared)
    except BaseException as error:  # KeyboardInterrupt: the workers got SIGINT too
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        merge_worker_files(out)
        account()
        mark_interrupted(prepared, error)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    account()
    summaries = [_read_summary(out, index) for index in range(workers)]
    merge_worker_files(out)
    codes = [process.exitcode for process in processes]
    terminated = [
        code in (EXIT_TERMINATED, -signal.SIGTERM) or bool(summary.get("terminated"))
        for code, summary in zip(codes, summaries, strict=True)
    ]
    if any(terminated):
        error = Terminated("stopped by SIGTERM; finished episodes are kept: run it again to resume")
        mark_interrupted(prepared, error)
        raise error
    died = [(index, code) for index, code in enumerate(codes) if code != 0]
    if died:
        error = ToolDojoError(
            "synthesis worker(s) "
            + ", ".join(f"{index} (exit {code})" for index, code in died)
            + " ended early; finished episodes are kept: run it again to resume"
        )
        mark_interrupted(prepared, error)
        raise error
    summary = _combined(summaries)
    engines = _summed([item.get("engines", {}) for item in summaries])
    faults = _summed([item.get("faults", {}) for item in summaries])
    hits = [
        *[hit.to_dict() for hit in prepared.bfcl_tool_hits],
        *[hit for item in summaries for hit in item.get("hits", [])],
    ]
    finish_stage(prepared, summary, engines=engines, faults=faults, hits=hits)
    return summary


async def _plan(request: SynthRequest) -> Any:
    """The plan (made or reused) and the manifest, with this process's models released before
    the workers load theirs."""
    prepared = await prepare_run(request)
    await prepared.aclose()
    for model in prepared.owned_models:
        close = getattr(model, "close", None)
        if close is not None:
            close()
    prepared.owned_models.clear()
    prepared.role_models.clear()
    prepared.env = None
    return prepared


def _worker_main(request: SynthRequest, index: int, workers: int) -> None:
    """A worker process: play this worker's share, then write what it did to ``summary.json``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers by SIGTERM
    try:
        anyio.run(_play_share, request, index, workers)
    except Terminated:
        raise SystemExit(EXIT_TERMINATED) from None


async def _play_share(request: SynthRequest, index: int, workers: int) -> None:
    prepared = await prepare_run(request)
    started = time.perf_counter()
    before = engine_counters(prepared.role_models)
    record: dict[str, Any] = {"worker": index, "workers": workers}
    try:
        summary = await play_until_sigterm(prepared, share=(index, workers))
    except Terminated:
        record["terminated"] = True
        _write_summary(request.out, index, record)
        raise
    finally:
        await prepared.aclose()
    from tooldojo.llm.faults import fault_counts

    record |= {
        "rows": {name: dataclasses.asdict(row) for name, row in summary.rows.items()},
        "errors": summary.errors,
        "retry_errors": summary.retry_errors,
        "aborted": summary.aborted,
        "hits": [hit.to_dict() for hit in summary.bfcl_hits],
        "engines": engine_work(
            before, engine_counters(prepared.role_models), time.perf_counter() - started
        ),
        "faults": fault_counts(prepared.role_models),
    }
    _write_summary(request.out, index, record)


def _write_summary(out: Path, index: int, record: dict[str, Any]) -> None:
    write_json_atomic(worker_dir(out, index) / SUMMARY, record, indent=1)


def _read_summary(out: Path, index: int) -> dict[str, Any]:
    path = worker_dir(out, index) / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class _LineCounter:
    """Episodes the workers have finished (kept or dropped) this session: the lines of their
    files, reading only what was appended since the last count."""

    def __init__(self, folders: list[Path]):
        self._read = {
            folder / name: (0, 0) for folder in folders for name in (TRAJECTORIES, DROPPED)
        }

    def count(self) -> int:
        for path, (offset, lines) in self._read.items():
            if path.exists() and path.stat().st_size > offset:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                self._read[path] = (offset + len(chunk), lines + chunk.count(b"\n"))
        return sum(lines for _, lines in self._read.values())


def _combined(summaries: list[dict[str, Any]]) -> SynthSummary:
    """The workers' summaries as one: counts per category summed, errors concatenated."""
    summary = SynthSummary()
    for item in summaries:
        for name, row in (item.get("rows") or {}).items():
            target = summary.rows[name]
            for field in dataclasses.fields(CategoryCounts):
                setattr(target, field.name, getattr(target, field.name) + row.get(field.name, 0))
        summary.errors += item.get("errors") or []
        summary.retry_errors += item.get("retry_errors") or []
        summary.aborted = summary.aborted or item.get("aborted")
    return summary


def _summed(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Nested counters summed key by key (rates too: the workers ran side by side)."""
    total: dict[str, Any] = {}
    for item in items:
        for key, value in item.items():
            if isinstance(value, dict):
                total[key] = _summed([total.get(key, {}), value])
            elif isinstance(value, int | float):
                total[key] = round(total.get(key, 0) + value, 3)
    return total
