"""Shared test settings: one thread for numeric libraries (two busy threads on two cores stall)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import atexit
import shutil
import tempfile

import pytest

# Tests never read or fill the user's BFCL answer cache (~/.cache/tooldojo/bfcl): fixtures
# shared by a module get this session folder, each test its own (the fixture below).
_BFCL_CACHE = tempfile.mkdtemp(prefix="tooldojo-test-bfcl-cache-")
os.environ["TOOLDOJO_BFCL_CACHE"] = _BFCL_CACHE
atexit.register(shutil.rmtree, _BFCL_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_bfcl_answer_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty answer cache per test, so no test sees answers another one stored."""
    monkeypatch.setenv("TOOLDOJO_BFCL_CACHE", str(tmp_path_factory.mktemp("bfcl-cache")))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (``@pytest.mark.anyio``), like the mcp SDK and openai client."""
    return "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    """Test helper modules (train_support.py...) import by name from the tests folder."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
