"""``metrics.csv``: one row per logging step (loss, rewards per gate, KL, step time).

Columns are the union of what the trainer logged; the file is rewritten atomically at
each log so a kill never leaves a half-written row.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

LEADING = ("step", "epoch", "loss", "reward", "reward_std", "kl", "step_time_s")


class MetricsCSVCallback(TrainerCallback):
    """Writes every ``on_log`` of a Trainer to ``path`` as CSV, with the mean step time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._step_started = 0.0
        self._step_times: list[float] = []
        self._train_started: float | None = None
        self._train_seconds = 0.0
        self._tokens: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_started = time.perf_counter()
        # A run resumed from checkpoint N keeps the rows of steps 1..N that the killed
        # process wrote (rows after N are logged again); a fresh run starts the file anew.
        self.rows = _rows_through(self.path, state.global_step) if state.global_step else []

    def on_train_end(self, args, state, control, **kwargs):
        if self._train_started is not None:
            self._train_seconds = time.perf_counter() - self._train_started

    def summary(self) -> dict[str, float]:
        """Real (non-pad) tokens per second over this process's training, when the trainer
        counts tokens (TRL's SFT logs ``num_tokens``)."""
        if not self._tokens or not self._train_seconds:
            return {}
        return {
            "train_tokens": int(self._tokens),
            "tokens_per_s": round(self._tokens / self._train_seconds, 2),
        }

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_times.append(time.perf_counter() - self._step_started)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        if isinstance(logs.get("num_tokens"), (int, float)):
            self._tokens = float(logs["num_tokens"])
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        if self._step_times:
            row["step_time_s"] = round(sum(self._step_times) / len(self._step_times), 4)
            self._step_times.clear()
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        columns = [c for c in LEADING if any(c in r for r in self.rows)]
        columns += sorted({k for r in self.rows for k in r} - set(columns))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, self.path)


def _rows_through(path: Path, step: int) -> list[dict[str, Any]]:
    """The rows of ``path`` up to ``step``, cells as written."""
    if not path.is_file():
        return []
    return [row for row in _cells(path) if float(row.get("step", "inf")) <= step]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` with numbers parsed (empty cells dropped)."""
    return [{k: float(v) for k, v in row.items()} for row in _cells(Path(path))]


def _cells(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` as text, empty cells dropped (a column a row lacks)."""
    with path.open() as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
