"""The run directory and its ``manifest.json``: what finished, from which inputs, with what.

A stage is recorded with the hashes of its inputs when it starts — input files, the model it
uses (:func:`model_identity`) and its config section (``@``-prefixed keys, see
:func:`stage_inputs`) — and ``done`` with the hashes of its outputs only after they are
complete. On a re-run a stage is skipped only when it is done, its recorded outputs still
hash the same, its inputs are the same and it left nothing to retry (``counts["incomplete"]``,
e.g. failed synthesis episodes). A stage whose inputs changed starts from scratch (its old
outputs are removed first); every stage downstream reads its outputs as inputs, so it is
redone in turn. A stage interrupted with the same inputs resumes inside its files
(append-only JSONL keyed by id), so a kill at any point loses no finished work and
duplicates nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tooldojo.hashing import content_hash
from tooldojo.model import RunManifest, StageRecord, utc_now

MANIFEST = "manifest.json"


def value_hash(value: Any) -> str:
    """sha256 of a JSON-able value (a config section), independent of key order."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def model_identity(model: str | Path) -> str:
    """What a model reference stands for: the content hash of a file or folder, else the
    reference itself (a backend alias such as ``embedded``)."""
    path = Path(model)
    if path.exists():
        return content_hash(path)
    return f"ref:{model}"


def stage_inputs(
    files: list[Path], *, root: Path, models: dict[str, str] | None = None, **config: Any
) -> dict[str, str]:
    """A stage's inputs as recorded: ``file → hash`` for each input file (``missing`` when
    absent), ``@model:<name> → identity`` and ``@<section> → hash`` of each config value."""
    out: dict[str, str] = {}
    for path in files:
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        out[name] = content_hash(path) if path.exists() else "missing"
    for name, model in (models or {}).items():
        out[f"@model:{name}"] = model_identity(model)
    for name, value in config.items():
        out[f"@{name}"] = value_hash(value)
    return out


class RunDir:
    """``runs/<name>/``: the manifest plus one ``iter-NNN`` folder per iteration."""

    def __init__(self, root: str | Path, *, config: dict[str, Any], seed: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        if path.is_file():
            self.manifest = RunManifest.model_validate_json(path.read_text())
            self.manifest.config = config
        else:
            self.manifest = RunManifest(
                name=self.root.name, config=config, seed=seed, versions=_versions()
            )
        self.save()

    def iteration_dir(self, iteration: int) -> Path:
        folder = self.root / f"iter-{iteration:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save(self) -> None:
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(self.manifest.model_dump_json(indent=2) + "\n")
        os.replace(tmp, self.root / MANIFEST)

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def is_done(self, key: str, inputs: dict[str, str] | None = None) -> bool:
        """Done, nothing left to retry, the same ``inputs`` (when given) and its outputs
        unchanged since (a hand-edited or deleted output reruns it)."""
        record = self.manifest.stages.get(key)
        if record is None or record.status != "done" or record.counts.get("incomplete"):
            return False
        if inputs is not None and record.inputs != inputs:
            return False
        for name, recorded in record.outputs.items():
            path = self.root / name
            if not path.exists() or content_hash(path) != recorded:
                return False
        return True

    def stale(self, key: str, inputs: dict[str, str]) -> bool:
        """Whether ``key`` ran (or started) from other inputs than these."""
        record = self.manifest.stages.get(key)
        return record is not None and record.status != "pending" and record.inputs != inputs

    def run_stage(
        self,
        key: str,
        work: Callable[[], dict[str, int] | None],
        *,
        inputs: dict[str, str] | list[Path] = (),  # type: ignore[assignment]
        outputs: list[Path],
        clears: list[Path] = (),  # type: ignore[assignment]
    ) -> bool:
        """Run ``work`` unless ``key`` is done with these inputs; record input and output
        hashes. Outputs (and ``clears``) of a run from other inputs are removed first, so
        append-only files do not keep stale records. True if it ran."""
        if not isinstance(inputs, dict):
            inputs = stage_inputs(list(inputs), root=self.root)
        if self.is_done(key, inputs):
            return False
        if self.stale(key, inputs):
            for path in [*outputs, *clears]:
                _remove(path)
        record = self.manifest.stages[key] = StageRecord(
            status="running", started_at=utc_now(), inputs=inputs
        )
        self.save()
        try:
            counts = work() or {}
        except BaseException as error:
            record.status = "failed"
            record.error = "".join(traceback.format_exception_only(error)).strip()[:500]
            record.finished_at = utc_now()
            self.save()
            raise
        record.counts = counts
        record.outputs = {self._relative(p): content_hash(p) for p in outputs}
        record.status = "done"
        record.finished_at = utc_now()
        self.save()
        return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in (
        "tooldojo",
        "transformers",
        "trl",
        "torch",
        "llama-cpp-python",
        "mcp",
        "bfcl-eval",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
