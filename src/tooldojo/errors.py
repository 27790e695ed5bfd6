"""Errors users see: one line naming the file and the place in it.

The CLI turns any :class:`ToolDojoError` into that line and exit status 2,
without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class ToolDojoError(Exception):
    """Base for errors caused by user input or the environment, not by a bug."""


class SpecError(ToolDojoError):
    """A tool spec that cannot be ingested.

    ``where`` is a JSON pointer (``/paths/~1pets/get``) or ``line N[:col]``.
    """

    def __init__(self, source: str | Path, where: str | None, message: str):
        self.source = str(source)
        self.where = where
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        place = f" at {self.where}" if self.where else ""
        return f"{self.source}{place}: {self.message}"


class DataError(ToolDojoError):
    """A malformed record in a JSONL data file."""

    def __init__(self, path: str | Path, line: int, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path} at line {self.line}: {self.message}"
