"""Shared test settings: one thread for numeric libraries (two busy threads on two cores stall)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (``@pytest.mark.anyio``), like the mcp SDK and openai client."""
    return "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    """Test helper modules (train_support.py...) import by name from the tests folder."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
