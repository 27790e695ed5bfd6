"""Ingestion from live MCP servers through the real `mcp` SDK client, over stdio and HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server_support import free_port
from tooldojo import SpecError, load_tools

SERVER = Path(__file__).parent / "fixtures" / "mcp_notes_server.py"


def check_notes_tools(tools) -> None:
    tools = {t.name: t for t in tools}
    assert set(tools) == {"add_note", "search_notes"}
    assert tools["add_note"].required == ["title", "body"]
    assert tools["add_note"].properties["pinned"]["type"] == "boolean"
    assert tools["search_notes"].original_name == "search.notes"
    assert tools["search_notes"].source.startswith("mcp:")


def test_stdio_server_tools():
    check_notes_tools(load_tools(f"stdio:{sys.executable} {SERVER}"))


@pytest.fixture
def http_server():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("MCP test server did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_streamable_http_server_tools(http_server):
    check_notes_tools(load_tools(http_server))


def test_stdio_command_that_is_not_a_server():
    with pytest.raises(SpecError, match="stdio:"):
        load_tools(f"stdio:{sys.executable} -c pass", timeout_s=15)
