"""sha256 of files and folders, shared by every stage that keys work by content.

The loop's resume (:mod:`tooldojo.loop.rundir`), the BFCL answer cache
(:mod:`tooldojo.eval.answer_cache`) and training's run fingerprint all hash model checkpoints
and data files; stages may not import each other, so the one implementation lives here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_FILE_HASHES: dict[tuple[str, int, int], str] = {}
"""(path, size, mtime) → sha256: a model checkpoint is hashed once per process, not per use."""


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            digest.update(content_hash(file).encode())
        return digest.hexdigest()
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def source_digest() -> str:
    """sha256 of tooldojo's own Python source (relative names and contents): a resumed
    stage whose verdicts depend on the code (``tooldojo verify``) tells stale output apart."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
