"""Run a model over BFCL: bounded concurrency, one JSONL line per finished entry, resume.

Every finished entry is appended (whole line, flushed) to the entries file with its raw
answer, the decoded calls and BFCL's verdict, including the checker's ``error_type`` for
every failure. A re-run skips the ids already there, so a killed evaluation goes on where
it stopped and never scores an entry twice; a file written by another model or mode is
refused rather than mixed in.

With an :class:`~tooldojo.eval.answer_cache.AnswerCache`, entries the same model already
answered under the same settings (in any earlier run) are taken from it and scored again by
BFCL's checkers; their lines say so (``reused_from``), and every fresh answer is stored.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field

from tooldojo.errors import ToolDojoError
from tooldojo.eval.answer_cache import AnswerCache, answer_key
from tooldojo.eval.bfcl_data import (
    CATEGORIES,
    BFCLEntry,
    dataset_size,
    expand_categories,
    load_category,
)
from tooldojo.eval.bfcl_modes import bfcl_tools, fc_raw_result, prompting_first_turn, to_messages
from tooldojo.eval.bfcl_multi_turn import BFCLEnvironments, run_multi_turn
from tooldojo.eval.bfcl_score import score_entry, summarize
from tooldojo.eval.models import EvalModel
from tooldojo.jsonl import append_jsonl, iter_jsonl_dicts
from tooldojo.llm.base import SamplingParams
from tooldojo.model import utc_now


class EntryResult(BaseModel):
    """One scored BFCL entry, as written to the entries JSONL."""

    id: str
    category: str
    model: str
    mode: str
    tool_format: str
    valid: bool
    error_type: str | None = None
    error: Any = None
    raw: Any = None
    """BFCL's raw model result: text (prompting), ``[{name: args_json}]`` or text (FC);
    per turn and step for multi-turn."""
    decoded: Any = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    inference_error: str | None = None
    reused_from: str | None = None
    """Where a reused answer came from (an answer cache, another evaluation's file); ``None``
    for an answer the model gave in this evaluation."""
    created_at: str = Field(default_factory=utc_now)


@dataclass
class BFCLSettings:
    categories: list[str] | None = None
    limit: int | None = None
    seed: int = 0
    concurrency: int = 4
    max_tokens: int = 512
    max_steps: int | None = None
    """Steps per multi-turn turn before force-quit; ``None``: BFCL's MAXIMUM_STEP_LIMIT (20)."""

    def sampling(self) -> SamplingParams:
        """Greedy decoding within ``max_tokens``: BFCL's setting, and part of the cache key."""
        return SamplingParams(temperature=0.0, max_tokens=self.max_tokens)


@dataclass
class BFCLRun:
    entries: list[BFCLEntry]
    results: list[EntryResult]
    summary: dict[str, Any]
    new: int = 0
    skipped: int = 0
    """Entries already in the entries file (resumed or reused), not asked in this call."""
    reused: int = 0
    """Of those, entries taken from the answer cache in this call."""
    errors: list[str] = field(default_factory=list)


def load_entries(settings: BFCLSettings) -> list[BFCLEntry]:
    """The selected entries of every selected category (sampled per ``limit``/``seed``)."""
    entries: list[BFCLEntry] = []
    for category in expand_categories(settings.categories):
        entries.extend(load_category(category, limit=settings.limit, seed=settings.seed))
    return entries


def _existing(path: Path, evaluated: EvalModel) -> dict[str, EntryResult]:
    done: dict[str, EntryResult] = {}
    for number, row in iter_jsonl_dicts(path):
        result = EntryResult.model_validate(row)
        if (result.model, result.mode, result.tool_format) != (
            evaluated.name,
            evaluated.mode,
            evaluated.tool_format,
        ):
            raise ToolDojoError(
                f"{path} at line {number}: holds results of {result.model!r} in mode "
                f"{result.mode} ({result.tool_format}), not {evaluated.name!r} in "
                f"{evaluated.mode} ({evaluated.tool_format}); choose another --out"
            )
        done[result.id] = result
    return done


async def _single_turn(
    entry: BFCLEntry, evaluated: EvalModel, sampling: SamplingParams, usage: dict[str, float]
) -> Any:
    """BFCL's ``inference_single_turn_FC`` / ``_prompting``: one question, one answer."""
    first_turn = entry.inference["question"][0]
    if evaluated.mode == "fc":
        messages = to_messages(first_turn)
        tools = bfcl_tools(entry.inference["function"])
    else:
        messages = prompting_first_turn(first_turn, entry.inference["function"], entry.id)
        tools = None
    completion = await evaluated.for_entry(entry).complete(messages, tools, sampling=sampling)
    usage["prompt_tokens"] += completion.usage.prompt_tokens
    usage["completion_tokens"] += completion.usage.completion_tokens
    usage["model_calls"] += 1
    return fc_raw_result(completion) if evaluated.mode == "fc" else completion.text


async def evaluate_entry(
    entry: BFCLEntry,
    evaluated: EvalModel,
    settings: BFCLSettings,
    environments: BFCLEnvironments,
) -> EntryResult:
    """Ask the model, then score with BFCL's checkers; a backend crash is recorded, not raised."""
    sampling = settings.sampling()
    usage = {"prompt_tokens": 0.0, "completion_tokens": 0.0, "model_calls": 0.0}
    started = time.perf_counter()
    inference_error = None
    try:
        if entry.is_multi_turn:
            raw, _ = await run_multi_turn(
                entry, evaluated, sampling, environments, usage, settings.max_steps
            )
        else:
            raw = await _single_turn(entry, evaluated, sampling, usage)
    except Exception as error:  # e.g. a prompt longer than the model's context window
        inference_error = f"{type(error).__name__}: {error}"
        raw = None
    latency = time.perf_counter() - started
    if inference_error is not None:
        kind = "multi_turn" if entry.is_multi_turn else "inference"
        verdict: dict[str, Any] = {
            "valid": False,
            "error_type": f"{kind}:inference_error",
            "error": [inference_error],
        }
    else:
        verdict = score_entry(entry, raw, evaluated.mode)
    return _result(
        entry,
        evaluated,
        raw,
        verdict,
        latency_s=round(latency, 4),
        prompt_tokens=int(usage["prompt_tokens"]),
        completion_tokens=int(usage["completion_tokens"]),
        model_calls=int(usage["model_calls"]),
        inference_error=inference_error,
    )


def _result(
    entry: BFCLEntry, evaluated: EvalModel, raw: Any, verdict: dict[str, Any], **facts: Any
) -> EntryResult:
    return EntryResult(
        id=entry.id,
        category=entry.category,
        model=evaluated.name,
        mode=evaluated.mode,
        tool_format=evaluated.tool_format,
        valid=verdict["valid"],
        error_type=verdict.get("error_type"),
        error=verdict.get("error"),
        raw=raw,
        decoded=verdict.get("decoded"),
        **facts,
    )


def open_cache(evaluated: EvalModel, settings: BFCLSettings) -> AnswerCache | None:
    """The answer cache of this model under these settings (``None``: a model without an
    identity, such as the oracle or a scripted model, is never cached)."""
    if evaluated.identity is None:
        return None
    key = answer_key(
        evaluated.identity,
        mode=evaluated.mode,
        tool_format=evaluated.tool_format,
        sampling=settings.sampling().model_dump(),
        max_steps=settings.max_steps,
    )
    return AnswerCache(key)


ANSWER_FIELDS = ("latency_s", "prompt_tokens", "completion_tokens", "model_calls", "created_at")


def _store(cache: AnswerCache, entry: BFCLEntry, result: EntryResult, origin: Path) -> None:
    """Keep a fresh answer (not one that failed at inference time: that may not recur)."""
    if result.inference_error is None and result.reused_from is None:
        answer = {"raw": result.raw, **{name: getattr(result, name) for name in ANSWER_FIELDS}}
        cache.put(entry.id, entry.inference, answer | {"origin": str(origin.resolve())})


def reuse_cached(
    cache: AnswerCache,
    evaluated: EvalModel,
    entries_path: str | Path,
    entries: list[BFCLEntry],
    on_result: Callable[[EntryResult], None] | None = None,
) -> int:
    """Append the cache's answers to selected entries that ``entries_path`` lacks, each scored
    again by BFCL's checkers and marked ``reused_from``; returns how many."""
    entries_path = Path(entries_path)
    have = set(_existing(entries_path, evaluated))
    results = []
    for entry in entries:
        if entry.id in have:
            continue
        stored = cache.get(entry.id, entry.inference)
        if stored is None:
            continue
        verdict = score_entry(entry, stored["raw"], evaluated.mode)
        results.append(
            _result(
                entry,
                evaluated,
                stored["raw"],
                verdict,
                latency_s=stored.get("latency_s", 0.0),
                prompt_tokens=stored.get("prompt_tokens", 0),
                completion_tokens=stored.get("completion_tokens", 0),
                model_calls=stored.get("model_calls", 0),
                reused_from=f"answer cache {cache.name} (answered for {stored.get('origin')} "
                f"at {stored.get('created_at')})",
            )
        )
        have.add(entry.id)
    append_jsonl(entries_path, results, batch=True)
    for result in results:
        if on_result is not None:
            on_result(result)
    return len(results)


async def run_bfcl(
    evaluated: EvalModel,
    entries_path: str | Path,
    settings: BFCLSettings,
    *,
    entries: list[BFCLEntry] | None = None,
    on_result: Callable[[EntryResult], None] | None = None,
    cache: AnswerCache | None = None,
    reuse_cache: bool = True,
) -> BFCLRun:
    """Evaluate ``evaluated`` on the selected entries; returns results and BFCL's summary.

    With ``cache``, stored answers are reused first (unless ``reuse_cache`` is off: the caller
    did it with :func:`reuse_cached`) and every fresh answer is stored."""
    if settings.concurrency < 1:
        raise ToolDojoError("--concurrency must be at least 1")
    entries_path = Path(entries_path)
    entries = entries if entries is not None else load_entries(settings)
    reused = 0
    if cache is not None and reuse_cache:
        reused = reuse_cached(cache, evaluated, entries_path, entries, on_result)
    done = _existing(entries_path, evaluated)
    todo = [entry for entry in entries if entry.id not in done]
    environments = BFCLEnvironments()
    limiter = anyio.CapacityLimiter(settings.concurrency)
    started = time.perf_counter()

    async def worker(entry: BFCLEntry) -> None:
        async with limiter:
            result = await evaluate_entry(entry, evaluated, settings, environments)
        append_jsonl(entries_path, [result])
        if cache is not None:
            _store(cache, entry, result, entries_path)
        done[result.id] = result
        if on_result is not None:
            on_result(result)

    async with anyio.create_task_group() as group:
        for entry in todo:
            group.start_soon(worker, entry)

    results = [done[entry.id] for entry in entries]
    summary = build_summary(evaluated, entries, results, settings)
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    summary["entries_file"] = str(entries_path)
    summary["answer_cache"] = str(cache.path) if cache is not None else None
    return BFCLRun(
        entries,
        results,
        summary,
        new=len(todo),
        skipped=len(entries) - len(todo),
        reused=reused,
    )


def _bfcl_version() -> str:
    try:
        return version("bfcl-eval")
    except PackageNotFoundError:
        return "unknown"


def build_summary(
    evaluated: EvalModel,
    entries: list[BFCLEntry],
    results: list[EntryResult],
    settings: BFCLSettings,
) -> dict[str, Any]:
    """Per-category accuracy, BFCL's groups and overall, error types, mode beside every score."""
    by_category: dict[str, list[EntryResult]] = {}
    for result in results:
        by_category.setdefault(result.category, []).append(result)
    sizes = {category: dataset_size(category) for category in CATEGORIES}
    categories: dict[str, Any] = {}
    scores: dict[str, dict[str, Any]] = {}
    for category in CATEGORIES:
        rows = by_category.get(category)
        if not rows:
            continue
        correct = sum(row.valid for row in rows)
        scores[category] = {"accuracy": correct / len(rows), "total_count": len(rows)}
        errors = Counter(row.error_type for row in rows if not row.valid)
        categories[category] = {
            "accuracy": correct / len(rows),
            "correct": correct,
            "total": len(rows),
            "dataset_size": sizes[category],
            "sampled": len(rows) < sizes[category],
            "error_types": dict(errors.most_common()),
            "inference_errors": sum(row.inference_error is not None for row in rows),
            "reused": sum(row.reused_from is not None for row in rows),
        }
    return {
        "benchmark": f"BFCL v4 (bfcl-eval {_bfcl_version()})",
        "model": evaluated.name,
        "model_spec": evaluated.spec,
        "mode": evaluated.mode,
        "tool_format": evaluated.tool_format,
        "mode_description": evaluated.description,
        "limit": settings.limit,
        "seed": settings.seed,
        "entries": len(results),
        "reused": sum(row.reused_from is not None for row in results),
        "categories": categories,
        "groups": summarize(scores, sizes),
    }
