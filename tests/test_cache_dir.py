"""One cache folder for every user of it: ``$TOOLDOJO_CACHE`` moves them all together (the BFCL
guard used to read ``$TOOLDOJO_CACHE_DIR`` and so stayed in the user's cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tooldojo import bfcl_guard
from tooldojo.cache_dir import cache_path
from tooldojo.eval import answer_cache
from tooldojo.specs import corpus
from tooldojo.specs.pytools import _cache as pylib_cache


def _every_user() -> dict[str, Path]:
    """The folder each cache user writes to, as it computes it now."""
    from tooldojo.llm import llamacpp

    return {
        "corpus": corpus.cache_root(),
        "pylib": pylib_cache.cache_dir(),
        "bfcl answers": answer_cache.cache_dir(),
        "llamacpp gguf/ and kv/": llamacpp._cache_folder(),
        "bfcl guard": bfcl_guard._cache_dir(),
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("TOOLDOJO_CACHE", "TOOLDOJO_CACHE_DIR", "TOOLDOJO_BFCL_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_setting_tooldojo_cache_moves_every_user(clean_env, tmp_path: Path):
    clean_env.setenv("TOOLDOJO_CACHE", str(tmp_path / "scratch"))
    clean_env.setenv("TOOLDOJO_CACHE_DIR", str(tmp_path / "ignored"))  # the old, odd name
    for user, folder in _every_user().items():
        assert folder.is_relative_to(tmp_path / "scratch"), (user, folder)
    assert cache_path("a", "b") == tmp_path / "scratch" / "a" / "b"


def test_the_default_is_the_xdg_cache_else_the_home_cache(clean_env, tmp_path: Path):
    for user, folder in _every_user().items():
        assert folder.is_relative_to(tmp_path / "home" / ".cache" / "tooldojo"), (user, folder)
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for user, folder in _every_user().items():
        assert folder.is_relative_to(tmp_path / "xdg" / "tooldojo"), (user, folder)


def test_the_bfcl_answer_store_keeps_its_own_override(clean_env, tmp_path: Path):
    clean_env.setenv("TOOLDOJO_CACHE", str(tmp_path / "scratch"))
    clean_env.setenv("TOOLDOJO_BFCL_CACHE", str(tmp_path / "answers"))
    assert answer_cache.cache_dir() == tmp_path / "answers"
