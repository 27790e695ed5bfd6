"""The built library on disk, so a process loads ``pylib:default`` instead of rebuilding it.

Building means importing numpy and scipy, introspecting ~1,500 callables and calling each in
the sandbox: 6-9 s on the shared machine, in every process that names ``pylib:``. The result
depends only on what :func:`library_key` lists — this package's source (and the few tooldojo
modules it builds with), the Python version, the versions of the introspected libraries and
of the parsers it uses, BFCL's installed data for the overlap check, the modules asked for and
the build options — so it is written once under ``$TOOLDOJO_CACHE`` (else
``~/.cache/tooldojo``) in ``pylib/`` and read back while the key matches.

The file is JSON (inspectable, and no code runs on reading it, unlike a pickle), holds its
full key, and is written aside and renamed into place, so it is whole or absent. A file that
cannot be read, parsed or validated, or whose key differs, is ignored and rebuilt: the cache
can make loading faster, never different. A build in which a probe call timed out is not
stored: a timeout can be the machine's load rather than the function, and a later process
should probe again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tooldojo.cache_dir import cache_path as cache_root
from tooldojo.model import Tool

log = logging.getLogger(__name__)
R = TypeVar("R")

FORMAT = 1
"""The file layout's version: bump when the stored fields change."""

_PACKAGE = Path(__file__).resolve().parent
_SOURCES = (
    *sorted(_PACKAGE.glob("*.py")),  # this package: introspection, schemas, probe, sandbox
    _PACKAGE.parent / "_schema.py",  # tool names
    _PACKAGE.parents[1] / "model.py",  # the Tool type that is stored
    _PACKAGE.parents[1] / "bfcl_guard.py",  # the BFCL content check
)
_DISTRIBUTIONS = ("numpy", "scipy", "docstring-parser", "jsonschema", "bfcl-eval", "tooldojo")
"""Introspected libraries (the stdlib ones come with the Python version) and what reads them."""


def cache_dir() -> Path:
    """``pylib/`` in tooldojo's cache folder (:func:`tooldojo.cache_dir.cache_path`)."""
    return cache_root("pylib")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in _SOURCES:
        if path.is_file():
            digest.update(f"{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _bfcl_data_digest() -> str | None:
    """Names and sizes of BFCL's data files (what the overlap check reads), found without
    importing ``bfcl_eval``."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    digest = hashlib.sha256()
    for path in sorted(data.rglob("*.json")):
        digest.update(f"{path.relative_to(data)}:{path.stat().st_size};".encode())
    return digest.hexdigest()


def library_key(modules: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    """Everything the built library depends on; a stored library is used only under an equal
    key."""
    return {
        "format": FORMAT,
        "sources": _sources_digest(),
        "python": sys.version,
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "distributions": {name: _version(name) for name in _DISTRIBUTIONS},
        "bfcl_data": _bfcl_data_digest() if options.get("exclude_bfcl") else None,
        "modules": list(modules),
        "options": options,
    }


def cache_path(modules: Sequence[str], options: dict[str, Any]) -> Path:
    """One file per module list and options; the rest of the key is checked inside it, so a
    changed key overwrites the old file instead of leaving it behind."""
    name = json.dumps({"modules": list(modules), "options": options}, sort_keys=True)
    return cache_dir() / f"library-{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def load(
    path: Path, key: dict[str, Any], make_report: Callable[[dict[str, Any]], R]
) -> tuple[list[Tool], R] | None:
    """The stored tools and build report (``make_report`` of its fields) when ``path`` holds a
    whole library built under ``key``; None when it is absent, unreadable, malformed or from
    another key."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or payload.get("key") != key:
            return None
        tools = [Tool.model_validate(row) for row in payload["tools"]]
        return tools, make_report(payload["report"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # ValueError:
        # bad JSON or a stored tool pydantic refuses; the others: a payload of the wrong shape
        log.warning("pylib: ignoring the unreadable cache %s (%s); rebuilding", path, error)
        return None


def store(path: Path, key: dict[str, Any], tools: list[Tool], report: dict[str, Any]) -> None:
    """Write the library to ``path`` whole or not at all (a failure only warns)."""
    payload = {
        "key": key,
        "tools": [tool.model_dump(mode="json") for tool in tools],
        "report": report,
    }
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        temporary = Path(name)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(temporary, path)
    except (OSError, TypeError, ValueError) as error:
        log.warning("pylib: could not cache the library at %s (%s)", path, error)
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def report_fields(report: Any) -> dict[str, Any]:
    """A :class:`~tooldojo.specs.pytools.LibraryReport`'s fields as JSON values."""
    return {
        "modules": list(report.modules),
        "candidates": report.candidates,
        "kept": report.kept,
        "dropped": dict(report.dropped),
        "kept_by_module": dict(report.kept_by_module),
        "bfcl_check": report.bfcl_check,
        "drops": [list(drop) for drop in report.drops],
        "seconds": report.seconds,
    }


def report_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    """The stored fields back as :class:`~tooldojo.specs.pytools.LibraryReport` arguments."""
    return {
        **fields,
        "dropped": Counter(fields["dropped"]),
        "kept_by_module": Counter(fields["kept_by_module"]),
        "drops": [tuple(drop) for drop in fields["drops"]],
    }
