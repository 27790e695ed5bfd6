"""Streaming JSONL that survives crashes: whole lines only, appended and flushed.

A record is serialized fully in memory and written with a single ``write`` on a
file opened in append mode, then flushed and fsynced. If a process is killed
mid-write the only possible damage is a last line without its newline; readers
ignore it and :func:`append_jsonl` truncates it before appending, so finished
work is never lost or duplicated and a half record never becomes data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tooldojo.errors import DataError

ModelT = TypeVar("ModelT", bound=BaseModel)
Record = BaseModel | dict[str, Any]


def _dumps(record: BaseModel | dict[str, Any]) -> str:
    if isinstance(record, BaseModel):
        return record.model_dump_json(exclude_none=False)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def drop_partial_tail(path: str | Path) -> int:
    """Truncate a last line that lacks its newline (a write cut short); returns bytes dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Walk back to the last newline in blocks; files are append-only so the tail is short.
        position = size
        block = 65536
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            index = chunk.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                handle.truncate(keep)
                return size - keep
            position = start
        handle.truncate(0)
        return size


def append_jsonl(
    path: str | Path, records: Iterable[BaseModel | dict[str, Any]], *, batch: bool = False
) -> int:
    """Append records, one complete line each, flushed and fsynced; returns how many.

    ``batch``: one fsync at the end instead of one per record (a thousand copied records: 3 s
    of fsyncs here); a kill still leaves only whole lines and at most one cut-off tail."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_partial_tail(path)
    count = 0
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(_dumps(record) + "\n")
            if not batch:
                handle.flush()
                os.fsync(handle.fileno())
            count += 1
        if batch:
            handle.flush()
            os.fsync(handle.fileno())
    return count


@contextmanager
def atomic_jsonl_writer(path: str | Path) -> Iterator[Callable[[Record], None]]:
    """A ``write(record)`` function whose lines replace ``path`` only when the block ends
    without an error (temp file + rename): no reader sees half, and records stream to disk
    instead of being held in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            yield lambda record: handle.write(_dumps(record) + "\n")  # type: ignore[func-returns-value]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl_atomic(path: str | Path, records: Iterable[Record]) -> int:
    """Replace ``path`` with ``records`` at once (temp file + rename): no reader sees half."""
    count = 0
    with atomic_jsonl_writer(path) as write:
        for record in records:
            write(record)
            count += 1
    return count


def write_json_atomic(
    path: str | Path,
    payload: Any,
    *,
    indent: int = 2,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Replace ``path`` with ``payload`` as one JSON document (temp file, fsync, rename): the
    whole file or nothing, for summaries, stamps, manifests and exports that a kill must not
    cut. ``default`` is :func:`json.dumps`'s (``str`` writes paths and dates as text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            text = json.dumps(payload, indent=indent, ensure_ascii=False, default=default)
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def iter_jsonl_dicts(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each complete line; a cut-off last line is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                return  # partial tail from an interrupted append: not data yet
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    path, number, f"invalid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(value, dict):
                raise DataError(path, number, "expected a JSON object")
            yield number, value


def read_jsonl(path: str | Path, model: type[ModelT]) -> Iterator[ModelT]:
    """Stream records of ``model`` from ``path``; a bad record raises :class:`DataError`."""
    for number, value in iter_jsonl_dicts(path):
        try:
            yield model.model_validate(value)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            raise DataError(path, number, f"{where}: {first['msg']}") from None


def existing_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to ``path``: a re-run stage skips these to resume without duplicates."""
    return {str(value[key]) for _, value in iter_jsonl_dicts(path) if key in value}
