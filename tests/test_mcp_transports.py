"""``tooldojo serve`` in its own process, reached by a plain ``mcp.Client`` over streamable
HTTP and stdio: the real SDK on both ends, the real embedded model for the simulated tools."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from tooldojo.mcp.episodes import EPISODE_META_KEY
from tooldojo.mcp.server import result_value

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "specs" / "weather_finance.openai.json"
TOOLDOJO = [sys.executable, "-m", "tooldojo.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow

COUNTER_MODULE = '''
class Counter:
    """One counter per episode."""

    def __init__(self):
        self.value = 0

    def increment(self, by: int = 1) -> dict:
        """Increase the counter by `by`."""
        self.value += by
        return {"value": self.value}
'''


@contextmanager
def serve_http(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `tooldojo serve --transport http --port 0 ...` and yield its URL."""
    process = subprocess.Popen(
        [*TOOLDOJO, "serve", "--transport", "http", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env or ENV,
        cwd=ROOT,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "serving MCP on " in line:
                yield line.split("serving MCP on ", 1)[1].strip()
                break
        else:
            pytest.fail("server exited before serving:\n" + "".join(lines))
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.anyio
async def test_simulated_tools_over_http_from_another_process() -> None:
    with serve_http("--specs", str(SPEC), "--executor", "simulated", "--timeout", "120") as url:
        async with mcp.Client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "get_current_weather" in names and len(names) >= 10
            result = await client.call_tool(
                "get_current_weather", {"location": "Paris, France"}, meta={EPISODE_META_KEY: "e1"}
            )
    assert isinstance(result_value(result), dict), result.content


@pytest.mark.anyio
async def test_simulated_tools_over_stdio() -> None:
    params = mcp.StdioServerParameters(
        command=sys.executable,
        args=["-m", "tooldojo.cli", "serve", "--specs", str(SPEC), "--timeout", "120"],
        env=ENV,
        cwd=str(ROOT),
    )
    async with mcp.Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "get_current_weather" in names
        result = await client.call_tool("get_current_weather", {"location": "Oslo"})
    assert isinstance(result_value(result), dict), result.content


@pytest.mark.anyio
async def test_two_hundred_concurrent_http_sessions_with_token(tmp_path: Path) -> None:
    module = tmp_path / "counter_tools.py"
    module.write_text(COUNTER_MODULE, encoding="utf-8")
    env = {**ENV, "MCP_TEST_TOKEN": "s3cret"}
    executor = f"python:{module}:Counter"
    with serve_http("--executor", executor, "--token-env", "MCP_TEST_TOKEN", env=env) as url:
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401

        async def session(index: int) -> None:
            headers = {"Authorization": "Bearer s3cret"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                mcp.Client(streamable_http_client(url, http_client=http)) as client,
            ):
                meta = {EPISODE_META_KEY: f"episode-{index}"}
                for _ in range(3):
                    result = await client.call_tool("increment", {"by": index}, meta=meta)
                    assert not result.is_error, result.content
            assert result_value(result) == {"value": 3 * index}

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for index in range(200):
                    group.start_soon(session, index)
