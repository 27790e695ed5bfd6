"""The disk cache of the Python library (``pylib:``): read back while its key holds, rebuilt
when anything in the key changes or the file is unreadable, never stored after a probe
timeout, and never in the way when it cannot be written."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tooldojo.specs import pytools
from tooldojo.specs.pytools import _cache, pylib_tools

SPEC = "pylib:colorsys"  # six small functions: a build takes about a second


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A fresh cache folder; each real build's report is appended to the list."""
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path / "cache"))
    made: list[Any] = []
    real = pytools.build_library

    def counting(*args: Any, **kwargs: Any) -> Any:
        tools, report = real(*args, **kwargs)
        made.append(report)
        return tools, report

    monkeypatch.setattr(pytools, "build_library", counting)
    pytools._cached_library.cache_clear()
    yield made
    pytools._cached_library.cache_clear()


def load() -> list[dict[str, Any]]:
    """The library as a new process sees it (the in-process memo cleared)."""
    pytools._cached_library.cache_clear()
    return [tool.model_dump(mode="json") for tool in pylib_tools(SPEC)]


def cache_file() -> Path:
    [path] = _cache.cache_dir().glob("library-*.json")
    return path


def test_a_new_process_reads_the_same_library_back(builds: list[Any]) -> None:
    built = load()
    assert len(builds) == 1 and built
    assert load() == built and len(builds) == 1  # read back, not rebuilt
    _, report = pytools._cached_library(("colorsys",))
    assert report.kept == len(built) and report.modules == ["colorsys"]
    assert report.dropped == builds[0].dropped and report.drops == builds[0].drops


@pytest.mark.parametrize("change", ["python", "library", "source", "bfcl"])
def test_a_changed_key_rebuilds(
    change: str, builds: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built = load()
    if change == "python":
        monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    elif change == "library":
        real = _cache._version
        monkeypatch.setattr(
            _cache, "_version", lambda name: "0.0.1" if name == "numpy" else real(name)
        )
    elif change == "source":
        extra = tmp_path / "_describe_v2.py"
        extra.write_text("# another way to describe parameters\n")
        monkeypatch.setattr(_cache, "_SOURCES", (*_cache._SOURCES, extra))
    else:
        monkeypatch.setattr(_cache, "_bfcl_data_digest", lambda: "other BFCL data")
    assert load() == built and len(builds) == 2  # rebuilt under the new key...
    assert load() == built and len(builds) == 2  # ...and stored under it
    assert len(list(_cache.cache_dir().glob("library-*.json"))) == 1  # overwritten, not added


def test_options_have_their_own_file() -> None:
    one = _cache.cache_path(["math"], {"probe": True})
    assert one != _cache.cache_path(["math"], {"probe": False})
    assert one != _cache.cache_path(["math", "cmath"], {"probe": True})


@pytest.mark.parametrize(
    "corrupt",
    ["empty", "truncated", "not an object", "bad tool", "bad report", "binary"],
)
def test_a_corrupt_cache_file_rebuilds(corrupt: str, builds: list[Any]) -> None:
    built = load()
    path = cache_file()
    payload = json.loads(path.read_text())
    if corrupt == "empty":
        path.write_text("")
    elif corrupt == "truncated":
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    elif corrupt == "not an object":
        path.write_text("[1, 2, 3]")
    elif corrupt == "bad tool":  # the right key, a tool pydantic refuses
        payload["tools"][0]["parameters"] = "not a schema"
        path.write_text(json.dumps(payload))
    elif corrupt == "bad report":
        payload["report"] = {"kept": "many"}
        path.write_text(json.dumps(payload))
    else:
        path.write_bytes(b"\xff\xfe\x00garbage")
    assert load() == built and len(builds) == 2
    assert json.loads(cache_file().read_text())["key"] == payload["key"]  # whole again


def test_a_build_with_a_probe_timeout_is_not_stored(
    builds: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = pytools.build_library

    def slow(*args: Any, **kwargs: Any) -> Any:
        tools, report = counting(*args, **kwargs)
        report.dropped["probe_timeout"] += 1  # as if one call ran over under load
        return tools, report

    monkeypatch.setattr(pytools, "build_library", slow)
    load()
    assert not list(_cache.cache_dir().glob("library-*.json"))
    load()
    assert len(builds) == 2  # probed again by the next process


def test_an_unwritable_cache_only_warns(
    builds: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("TOOLDOJO_CACHE", str(blocker))  # its pylib/ folder cannot be made
    assert load() and len(builds) == 1
    assert "could not cache the library" in caplog.text
