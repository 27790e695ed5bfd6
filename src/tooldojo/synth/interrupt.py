"""A synthesis stopped by SIGTERM ends as one stopped by an error does: what finished is on
disk, and the manifest says the run was interrupted and how long it has run in all.

Without this, SIGTERM (``kill``, ``timeout``, a container stop, a batch scheduler's time
limit) ended the process at once: finished episodes were kept, since each is appended as it
ends, but the manifest still said ``running`` and the time of that session was lost, so a run
resumed over several sessions could not say how long it took. SIGINT already arrives as a
cancellation through the event loop, but a background job ignores it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from tooldojo.errors import ToolDojoError

T = TypeVar("T")


class Terminated(ToolDojoError):
    """The process got SIGTERM; finished work is kept and the same command resumes it."""


async def until_sigterm(work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, cancelled when the process gets SIGTERM, which then raises
    :class:`Terminated`. Off the main thread (where signals cannot be received) it only
    awaits ``work()``."""
    if threading.current_thread() is not threading.main_thread():
        return await work()
    done: list[T] = []
    stopped = False

    try:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal stopped
                with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        stopped = True
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            done.append(await work())
            group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:
        # the work's own error, as itself: the watcher never fails
        if len(errors.exceptions) == 1:
            raise errors.exceptions[0] from None
        raise
    if stopped:
        raise Terminated("stopped by SIGTERM; finished episodes are kept: run it again to resume")
    return done[0]
