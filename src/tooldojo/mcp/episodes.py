"""Per-episode state: each role-play episode sees its own world, however many run at once.

An *episode* is one conversation between an assistant and the tools. Stateful executors
(a Python class instance, a simulated API's memory) keep their state in the episode, so two
episodes never see each other's writes. Since MCP 2026-07-28 is stateless per request (every
request gets a fresh server session object, see docs/mcp.md), the episode id travels in the
request's ``_meta`` rather than being inferred from the connection.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio

EPISODE_META_KEY = "tooldojo/episode"
"""``_meta`` key of a ``tools/call`` request naming its episode (any string)."""
EPISODE_INIT_META_KEY = "tooldojo/episode_init"
"""``_meta`` key carrying the episode's initial configuration (a JSON object); it is read when
the episode is created by that call and ignored afterwards."""
RESULT_FIELDS_META_KEY = "tooldojo/result_fields"
"""``_meta`` key of a ``tools/call`` request listing fields of its result that a later step of
the caller's plan reads (``["divisionId"]``): a simulated executor answers with them, as the
real API would, instead of leaving them out to save tokens (see ``Episode.result_fields``)."""
DEFAULT_EPISODE = "default"
"""Episode of calls that name none and arrive without a transport session id."""


@dataclass
class CallRecord:
    """One executed call, as the episode's state log remembers it."""

    tool: str
    arguments: dict[str, Any]
    result: Any
    is_error: bool


@dataclass
class Episode:
    """State of one episode: executor-owned slots, the call log and a lock.

    ``lock`` serializes the episode's calls: a stateful world must see one call at a time
    (parallel tool calls of one assistant turn still run in a defined order).
    """

    id: str
    init: dict[str, Any] = field(default_factory=dict)
    state: dict[Any, Any] = field(default_factory=dict)
    log: list[CallRecord] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    result_fields: list[str] = field(default_factory=list)
    """Fields the call being executed must return (its request's ``RESULT_FIELDS_META_KEY``);
    set under ``lock`` for that call only."""


class EpisodeStore:
    """Episodes by id, bounded: the least recently used episode is dropped past ``max_episodes``.

    A long synthesis run opens thousands of episodes; without a bound the server would keep
    every one of them. Call :meth:`end` when an episode is over to free it at once.
    """

    def __init__(self, max_episodes: int = 10_000):
        if max_episodes < 1:
            raise ValueError("max_episodes must be at least 1")
        self.max_episodes = max_episodes
        self._episodes: OrderedDict[str, Episode] = OrderedDict()

    def get_or_create(self, episode_id: str, init: dict[str, Any] | None = None) -> Episode:
        """The episode ``episode_id``; a new one starts from ``init`` (ignored if it exists)."""
        episode = self._episodes.get(episode_id)
        if episode is None:
            episode = Episode(id=episode_id, init=dict(init or {}))
            self._episodes[episode_id] = episode
            while len(self._episodes) > self.max_episodes:
                self._episodes.popitem(last=False)
        else:
            self._episodes.move_to_end(episode_id)
        episode.last_used = time.monotonic()
        return episode

    def get(self, episode_id: str) -> Episode | None:
        return self._episodes.get(episode_id)

    def end(self, episode_id: str) -> bool:
        """Forget an episode's state. Returns whether it existed."""
        return self._episodes.pop(episode_id, None) is not None

    def __len__(self) -> int:
        return len(self._episodes)

    def __contains__(self, episode_id: object) -> bool:
        return episode_id in self._episodes
