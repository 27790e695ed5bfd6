"""The run directory and its ``manifest.json``: what finished, with which content.

A stage is recorded ``done`` with the hashes of its outputs only after they are
complete. On a re-run, a stage whose recorded outputs still hash the same is skipped;
anything else runs again, and the stages themselves resume inside their files
(append-only JSONL keyed by id), so a kill at any point loses no finished work and
duplicates nothing.
"""

from __future__ import annotations

import hashlib
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tooldojo.model import RunManifest, StageRecord, utc_now

MANIFEST = "manifest.json"


def content_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            digest.update(content_hash(file).encode())
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    def is_done(self, key: str) -> bool:
        """Done and its outputs unchanged since (a hand-edited or deleted output reruns it)."""
        record = self.manifest.stages.get(key)
        if record is None or record.status != "done":
            return False
        for name, recorded in record.outputs.items():
            path = self.root / name
            if not path.exists() or content_hash(path) != recorded:
                return False
        return True

    def run_stage(
        self,
        key: str,
        work: Callable[[], dict[str, int] | None],
        *,
        inputs: list[Path] = (),  # type: ignore[assignment]
        outputs: list[Path],
    ) -> bool:
        """Run ``work`` unless ``key`` is done; record inputs/outputs hashes. True if it ran."""
        if self.is_done(key):
            return False
        record = self.manifest.stages[key] = StageRecord(
            status="running",
            started_at=utc_now(),
            inputs={self._relative(p): content_hash(p) for p in inputs if p.exists()},
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
