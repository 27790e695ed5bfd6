"""Cancelling a synthesis run at any point: no error leaks out, nothing is lost or duplicated.

Scripted models over the real in-memory MCP server (python executor on examples/tools), so the
cancellations land inside real MCP calls, the case that used to leak ``MCPError: Connection
closed`` in an ExceptionGroup.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from test_synth_orchestration import request
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.model import Trajectory
from tooldojo.synth.episode import Dropped
from tooldojo.synth.pipeline import prepare_run, run_prepared
from tooldojo.synth.runner import Failed

CANCEL_POINTS = 60


def _done_ids(out: Path) -> list[str]:
    """Ids on disk, each line parsed whole (a torn line would fail to parse and be skipped)."""
    ids = [r["scenario_id"] for _, r in iter_jsonl_dicts(out / "trajectories.jsonl")]
    return ids + [r["id"] for _, r in iter_jsonl_dicts(out / "dropped.jsonl")]


@pytest.mark.anyio
async def test_cancel_at_random_points_loses_and_duplicates_nothing(tmp_path: Path):
    n = 80
    prepared = await prepare_run(request(tmp_path, n=n, concurrency=3))
    out = tmp_path / "out"
    planned = sorted(s.id for s in prepared.scenarios)
    rng = random.Random(0)
    cancelled_in_flight = 0
    for _ in range(CANCEL_POINTS):
        before = _done_ids(out)
        reported: list[str] = []

        def note(outcome, reported: list[str] = reported) -> None:  # type: ignore[no-untyped-def]
            assert not isinstance(outcome, Failed), outcome  # a cancel is no failure
            if isinstance(outcome, Trajectory):
                reported.append(outcome.scenario_id or outcome.id)
            elif isinstance(outcome, Dropped):
                reported.append(outcome.scenario_id)

        # Cancel after a random number of event-loop turns: anywhere in an episode, including
        # inside an in-memory MCP call. Whatever the point, the run must end quietly.
        turns = rng.randrange(0, 30)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def cancel_later(turns: int = turns) -> None:
                    for _ in range(turns):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                group.start_soon(cancel_later)
                await run_prepared(prepared, note)
                group.cancel_scope.cancel()  # finished before the cancel point
        if scope.cancelled_caught:
            cancelled_in_flight += 1
        after = _done_ids(out)
        assert len(after) == len(set(after)), "an episode was written twice"
        assert sorted(after) == sorted(before + reported), "reported work missing on disk"
        manifest = json.loads((out / "manifest.json").read_text())  # whole, never torn
        assert manifest["stages"]["synth"]["status"] in ("failed", "done")
        if len(after) == n:
            break

    assert cancelled_in_flight >= 50
    summary = await run_prepared(prepared)
    assert summary.total("failed") == 0
    final = _done_ids(out)
    assert sorted(final) == planned  # every planned episode exactly once


@pytest.mark.anyio
async def test_an_interrupt_mid_run_keeps_finished_work_and_says_so(tmp_path: Path):
    """A crash mid-run (here the disk filling up) propagates as itself, not inside an
    ExceptionGroup; what finished is on disk once, the manifest says the stage was
    interrupted, and the resumed run completes the rest. (A real Ctrl-C takes the same path,
    but asyncio re-raises KeyboardInterrupt straight out of the event loop, past pytest.)"""
    prepared = await prepare_run(request(tmp_path, n=12, concurrency=3))
    seen: list[str] = []

    def interrupt_after_three(outcome) -> None:  # type: ignore[no-untyped-def]
        seen.append(outcome.scenario_id)
        if len(seen) == 3:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await run_prepared(prepared, interrupt_after_three)
    out = tmp_path / "out"
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["status"] == "failed" and "interrupted (OSError)" in stage["error"]
    assert sorted(_done_ids(out)) == sorted(seen)
    await run_prepared(prepared)
    assert sorted(_done_ids(out)) == sorted(s.id for s in prepared.scenarios)


@pytest.mark.anyio
async def test_sigterm_mid_run_keeps_finished_work_and_the_manifest_adds_up_the_time(
    tmp_path: Path,
):
    """SIGTERM (kill, timeout, a scheduler's limit) ends the run as an error does: finished
    work kept, the manifest says interrupted, and its wall time and session count add up
    over the resumed sessions."""
    import os
    import signal
    import threading

    from tooldojo.synth.interrupt import Terminated

    assert threading.current_thread() is threading.main_thread()  # else SIGTERM kills pytest
    prepared = await prepare_run(request(tmp_path, n=12, concurrency=3))
    seen: list[str] = []

    def terminate_after_three(outcome) -> None:  # type: ignore[no-untyped-def]
        seen.append(outcome.scenario_id)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated, match="stopped by SIGTERM"):
        await run_prepared(prepared, terminate_after_three)
    out = tmp_path / "out"
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["status"] == "failed" and "interrupted (Terminated)" in stage["error"]
    assert stage["sessions"] == 1 and stage["wall_seconds"] >= 0
    assert set(seen) <= set(_done_ids(out)) and len(set(_done_ids(out))) == len(_done_ids(out))
    first = stage["wall_seconds"]
    await anyio.sleep(0.2)
    await run_prepared(prepared)
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["status"] == "done" and stage["sessions"] == 2
    assert stage["wall_seconds"] >= first  # the second session added to the first's
    assert sorted(_done_ids(out)) == sorted(s.id for s in prepared.scenarios)
