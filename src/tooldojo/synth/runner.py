"""Running many episodes: a bounded number in flight, each streamed to disk as it finishes.

:func:`run_shard` is the unit of work: a pure function from scenarios to outcomes
(trajectories, dropped duplicates, failures) that a later stage may fan out over Ray without
touching anything else. :func:`synth_to_dir` wraps it with the run directory: resume (ids
already in ``trajectories.jsonl`` or ``dropped.jsonl`` are skipped), append-only output (a kill
loses at most the episodes in flight) and a stop when the backend keeps failing.
"""

from __future__ import annotations

import math
import shutil
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from tooldojo.bfcl_guard import BfclGuard, GuardHit, GuardMode, message_hits
from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, drop_partial_tail, iter_jsonl_dicts
from tooldojo.model import Scenario, Trajectory
from tooldojo.synth.dedup import NearDuplicateFilter
from tooldojo.synth.episode import Dropped, EpisodeEnv, EpisodeFailed, run_episode
from tooldojo.synth.plan_file import PlanFile, ids_and_categories, in_play_order

TRAJECTORIES = "trajectories.jsonl"
DROPPED = "dropped.jsonl"
SCENARIOS = "scenarios.jsonl"
WORKERS = "workers"


@dataclass
class Failed:
    """An episode that could not be played; not written, so a re-run retries it."""

    scenario_id: str
    category: str
    error: str


Outcome = Trajectory | Dropped | Failed


class SynthAborted(ToolDojoError):
    """Too many episodes failed in a row: the backend is down or misconfigured."""


async def run_shard(
    scenarios: Iterable[Scenario],
    env: EpisodeEnv,
    *,
    concurrency: int = 8,
    on_outcome: Callable[[Outcome], None] | None = None,
    max_consecutive_failures: int | None = None,
    retries: int = 0,
    on_retry: Callable[[Failed], None] | None = None,
) -> list[Outcome]:
    """Play every scenario with at most ``concurrency`` episodes in flight.

    A failed episode (a backend error or timeout, an agent bug) is played again up to
    ``retries`` times before it counts as failed; ``on_retry`` sees each failure retried.
    An episode is deterministic given its scenario (its random stream is seeded by the
    scenario), so a retry replays it, and only a transient fault makes the difference.

    ``on_outcome`` sees each outcome as soon as it exists (in completion order); the return
    value lists them in scenario order. Workers pull scenarios from one iterator, so memory
    stays flat however many scenarios there are. After ``max_consecutive_failures`` failures
    in a row the shard stops and raises :class:`SynthAborted` (finished outcomes were already
    handed to ``on_outcome``).
    """
    if concurrency < 1:
        raise ToolDojoError("--concurrency must be at least 1")
    iterator = iter(enumerate(scenarios))
    outcomes: dict[int, Outcome] = {}
    streak = 0
    last_error = ""
    collect = on_outcome is None

    async def worker(group: anyio.abc.TaskGroup) -> None:
        nonlocal streak, last_error
        for position, scenario in iterator:
            for attempt in range(retries + 1):
                outcome = await _play(scenario, env)
                if not isinstance(outcome, Failed) or attempt == retries:
                    break
                if on_retry is not None:
                    on_retry(outcome)
            if isinstance(outcome, Failed):
                streak += 1
                last_error = outcome.error
            else:
                streak = 0
            if collect:
                outcomes[position] = outcome
            else:
                on_outcome(outcome)  # type: ignore[misc]
            if max_consecutive_failures is not None and streak >= max_consecutive_failures:
                group.cancel_scope.cancel()
                return

    try:
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker, group)
    except BaseExceptionGroup as error:
        # One worker's KeyboardInterrupt (or bug) is raised as itself, not as a group that
        # callers would have to pick apart.
        leaves = _leaves(error)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
    if max_consecutive_failures is not None and streak >= max_consecutive_failures:
        raise SynthAborted(
            f"stopped after {streak} failed episodes in a row; last error: {last_error}"
        )
    return [outcomes[i] for i in sorted(outcomes)]


def _leaves(error: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for inner in error.exceptions:
        found += _leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner]
    return found


async def _play(scenario: Scenario, env: EpisodeEnv) -> Outcome:
    """One attempt at an episode; any error but a cancellation becomes a :class:`Failed`."""
    try:
        return await run_episode(scenario, env)
    except anyio.get_cancelled_exc_class():
        raise
    except BaseException as error:
        if anyio.current_effective_deadline() == -math.inf:
            await _raise_cancellation()
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt, SystemExit
        # An agent bug or a backend error must not end the other episodes.
        return Failed(scenario.id, scenario.category, describe_failure(error))


async def _raise_cancellation() -> None:
    """Raise the pending cancellation itself, in place of what the cancel caused.

    Cancelling a run while an in-memory MCP call is in flight makes the client raise
    ``MCPError: Connection closed``, wrapped in the ExceptionGroups of the SDK's task groups.
    That error is an effect of the cancellation, not an episode outcome; re-raising it would
    carry it out of the cancel scope (which absorbs only cancellations) and out of the run. A
    checkpoint inside the cancelled scope raises the cancellation exception instead, with the
    original error kept as its ``__context__``.
    """
    await anyio.lowlevel.checkpoint()
    raise RuntimeError("a cancelled scope did not deliver its cancellation")  # pragma: no cover


def describe_failure(error: BaseException) -> str:
    """One line for a failed episode; task groups (the MCP client's) wrap the real error."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, EpisodeFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass
class CategoryCounts:
    planned: int = 0
    finished: int = 0
    failed: int = 0
    dropped: int = 0
    skipped: int = 0
    retried: int = 0
    """Failed attempts played again (each retry once, whatever its final outcome)."""
    tokens: int = 0


@dataclass
class SynthSummary:
    """What a :func:`synth_to_dir` call did, per category."""

    rows: dict[str, CategoryCounts] = field(default_factory=lambda: defaultdict(CategoryCounts))
    errors: list[str] = field(default_factory=list)
    """Episodes that failed for good (after their retries)."""
    bfcl_hits: list[GuardHit] = field(default_factory=list)
    """User messages recognised as BFCL questions (refused: dropped; warn: kept)."""
    retry_errors: list[str] = field(default_factory=list)
    """Why attempts failed that were then retried."""
    aborted: str | None = None

    def total(self, name: str) -> int:
        return sum(getattr(row, name) for row in self.rows.values())


def first_request(record: dict[str, Any]) -> str | None:
    for message in record.get("messages") or []:
        if message.get("role") == "user":
            return message.get("content") or ""
    return None


def trajectory_tokens(trajectory: Trajectory) -> int:
    tokens = trajectory.metadata.get("tokens") or {}
    return sum(sum(slot.values()) for slot in tokens.values() if isinstance(slot, dict))


async def synth_to_dir(
    out_dir: str | Path,
    scenarios: Iterable[Scenario],
    env: EpisodeEnv,
    *,
    concurrency: int = 8,
    dedup_threshold: float | None = 0.9,
    max_consecutive_failures: int = 10,
    on_outcome: Callable[[Outcome], None] | None = None,
    retries: int = 2,
    bfcl_guard: GuardMode | None = "refuse",
    share: tuple[int, int] | None = None,
) -> SynthSummary:
    """Play the scenarios not yet done into ``out_dir/trajectories.jsonl`` (resumable).

    With ``bfcl_guard`` set, every user message of a finished episode is checked against
    BFCL's questions: ``refuse`` drops the episode (recorded in ``dropped.jsonl``, so a resume
    does not replay it), ``warn`` keeps it; either way the hit is in the summary.

    ``share=(i, k)``: one of ``k`` worker processes (:mod:`tooldojo.synth.workers`) plays only
    the scenarios :func:`worker_of` gives to ``i`` and writes them to :func:`worker_dir` (the
    parent merges them); the folder's own files still count as done.
    """
    guard = BfclGuard.load() if bfcl_guard else None  # loaded before the first episode
    out = Path(out_dir)
    if share is None:  # what worker processes of an earlier session left unmerged
        merge_worker_files(out)
    folders = [out] if share is None else [out, worker_dir(out, share[0])]
    traj_path, dropped_path = folders[-1] / TRAJECTORIES, folders[-1] / DROPPED
    done: set[str] = set()
    dedup = NearDuplicateFilter(dedup_threshold) if dedup_threshold else None
    for folder in folders:
        for _, record in iter_jsonl_dicts(folder / TRAJECTORIES):
            key = str(record.get("scenario_id") or record.get("id"))
            done.add(key)
            request = first_request(record)
            if dedup is not None and request is not None:
                dedup.add(key, request)
        done |= {
            str(r.get("scenario_id") or r.get("id")) for _, r in iter_jsonl_dicts(folder / DROPPED)
        }

    if not isinstance(scenarios, PlanFile | Sequence):
        scenarios = list(scenarios)  # read twice below: counted, then played
    summary = SynthSummary()
    category_of: dict[str, str] = {}  # of the pending scenarios, for their dropped records
    others: set[str] = set()  # another worker's scenarios: neither counted nor played here
    for scenario_id, category in ids_and_categories(scenarios):
        if share is not None and worker_of(scenario_id, share[1]) != share[0]:
            others.add(scenario_id)
            continue
        row = summary.rows[category]
        row.planned += 1
        if scenario_id in done:
            row.skipped += 1
        else:
            category_of[scenario_id] = category

    if dedup is not None:

        def accept(scenario: Scenario, request: str) -> str | None:
            twin = dedup.check(scenario.id, request)
            return None if twin is None else f"near-duplicate of {twin}"

        env.accept_request = accept

    def record(outcome: Outcome) -> None:
        if isinstance(outcome, Trajectory) and guard is not None:
            hits = message_hits(outcome.messages)
            summary.bfcl_hits += [
                GuardHit(
                    hit.kind,
                    hit.bfcl_id,
                    f"{outcome.scenario_id}: {hit.detail}",
                    outcome.scenario_id or outcome.id,
                )
                for hit in hits
            ]
            if hits and bfcl_guard == "refuse":
                request = first_request(outcome.model_dump()) or ""
                reason = f"BFCL question ({hits[0].bfcl_id}) in a user message"
                outcome = Dropped(outcome.scenario_id or outcome.id, reason, request)
        if isinstance(outcome, Trajectory):
            append_jsonl(traj_path, [outcome])
            row = summary.rows[outcome.category or "unknown"]
            row.finished += 1
            row.tokens += trajectory_tokens(outcome)
        elif isinstance(outcome, Dropped):
            category = category_of[outcome.scenario_id]
            append_jsonl(
                dropped_path,
                [
                    {
                        "id": outcome.scenario_id,
                        "scenario_id": outcome.scenario_id,
                        "category": category,
                        "reason": outcome.reason,
                        "request": outcome.request,
                    }
                ],
            )
            summary.rows[category].dropped += 1
        else:
            summary.rows[outcome.category].failed += 1
            if len(summary.errors) < 20:
                summary.errors.append(f"{outcome.scenario_id}: {outcome.error}")
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        await run_shard(
            in_play_order(scenarios, done | others),
            env,
            concurrency=concurrency,
            on_outcome=record,
            max_consecutive_failures=max_consecutive_failures,
            retries=retries,
            on_retry=lambda failed: _count_retry(summary, failed),
        )
    except SynthAborted as error:
        summary.aborted = str(error)
    return summary


def worker_of(scenario_id: str, workers: int) -> int:
    """The worker (of ``workers``) that plays a scenario: a stable hash of its id, so a resumed
    run with as many workers gives each the same scenarios."""
    return zlib.crc32(scenario_id.encode("utf-8")) % workers


def worker_dir(out: Path, index: int) -> Path:
    """Where worker ``index`` of a run in ``out`` writes its episodes until they are merged."""
    return out / WORKERS / str(index)


def finished_ids(out: Path) -> set[str]:
    """Ids of the scenarios finished or dropped in ``out``, counting the worker folders not yet
    merged (a killed run's, or episodes played elsewhere and put there): they are done, only
    not moved into the run's own files."""
    root = out / WORKERS
    folders = [out] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    done: set[str] = set()
    for folder in folders:
        for name, key in ((TRAJECTORIES, "scenario_id"), (DROPPED, "id")):
            done |= {_key(record, key) for _, record in iter_jsonl_dicts(folder / name)}
    return done


def merge_worker_files(out: Path) -> int:
    """Move every worker's finished episodes into the run's own files; returns how many moved.

    Records whose id the run's file already holds are skipped (a merge cut short by a kill is
    simply done again), and a worker's file is removed only after its lines are fsynced in
    the run's file.
    """
    moved = 0
    root = out / WORKERS
    if not root.is_dir():
        return 0
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        for name, key in ((TRAJECTORIES, "scenario_id"), (DROPPED, "id")):
            source = folder / name
            if not source.exists():
                continue
            drop_partial_tail(source)  # the episode a killed worker was writing
            target = out / name
            present = {_key(record, key) for _, record in iter_jsonl_dicts(target)}
            fresh = [
                record for _, record in iter_jsonl_dicts(source) if _key(record, key) not in present
            ]
            moved += append_jsonl(target, fresh, batch=True) if fresh else 0
            source.unlink()
        if not any(path.suffix == ".jsonl" for path in folder.iterdir()):
            shutil.rmtree(folder)  # what is left is the worker's summary.json
    if not any(root.iterdir()):
        root.rmdir()
    return moved


def _key(record: dict[str, Any], key: str) -> str:
    """A finished episode's scenario id, as :func:`~tooldojo.synth.runner.synth_to_dir` reads it."""
    return str(record.get(key) or record.get("id"))


def _count_retry(summary: SynthSummary, failed: Failed) -> None:
    summary.rows[failed.category].retried += 1
    if len(summary.retry_errors) < 20:
        summary.retry_errors.append(f"{failed.scenario_id}: {failed.error}")


def category_mix(categories: Sequence[str] | None) -> dict[str, float] | None:
    """``--categories single,parallel:2`` → ``{"single": 1.0, "parallel": 2.0}``."""
    if not categories:
        return None
    mix: dict[str, float] = {}
    for item in categories:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, _, weight = part.partition(":")
            try:
                mix[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise ToolDojoError(f"--categories {part!r}: weight must be a number") from None
    return mix or None
