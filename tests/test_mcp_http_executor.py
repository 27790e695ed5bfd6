"""The http executor against a real REST app served by uvicorn on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.executors.http import HttpExecutor
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import ToolServer, result_value
from tooldojo.model import Tool


async def get_book(request: Request) -> JSONResponse:
    if request.path_params["book_id"] == "missing":
        return JSONResponse({"detail": "no such book"}, status_code=404)
    return JSONResponse(
        {
            "id": request.path_params["book_id"],
            "fields": request.query_params.get("fields"),
            "lang": request.headers.get("x-lang"),
            "session": request.cookies.get("session"),
        }
    )


async def create_book(request: Request) -> JSONResponse:
    return JSONResponse({"created": await request.json()}, status_code=201)


async def huge(request: Request) -> PlainTextResponse:
    return PlainTextResponse("x" * 50_000)


async def slow(request: Request) -> PlainTextResponse:
    await anyio.sleep(2)
    return PlainTextResponse("late")


APP = Starlette(
    routes=[
        Route("/books/{book_id}", get_book),
        Route("/books", create_book, methods=["POST"]),
        Route("/huge", huge),
        Route("/slow", slow),
    ]
)


@asynccontextmanager
async def running_app() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(APP, log_level="warning", lifespan="off", timeout_graceful_shutdown=0.1)
    )
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        server.should_exit = True


def _tool(name: str, method: str, path: str, params: dict, body_mode: str = "merged") -> Tool:
    properties = {key: {} for key in params}
    return Tool(
        name=name,
        parameters={"type": "object", "properties": properties},
        metadata={
            "http": {
                "method": method,
                "path": path,
                "servers": ["http://api.invalid"],
                "params": params,
                "body_mode": body_mode,
            }
        },
    )


GET_BOOK = _tool(
    "get_book",
    "get",
    "/books/{book_id}",
    {"book_id": "path", "fields": "query", "x-lang": "header", "session": "cookie"},
)
CREATE_MERGED = _tool("create_book", "post", "/books", {"title": "body", "year": "body"})
CREATE_WHOLE = _tool("create_raw", "post", "/books", {"body": "body"}, body_mode="whole")
HUGE = _tool("huge", "get", "/huge", {})
SLOW = _tool("slow", "get", "/slow", {})


@pytest.mark.anyio
async def test_http_executor_maps_arguments_and_enforces_limits() -> None:
    async with running_app() as base_url:
        executor = HttpExecutor(
            ["127.0.0.1"], base_url=base_url, timeout_s=0.5, max_response_bytes=10_000
        )
        registry = ToolRegistry()
        registry.add([GET_BOOK, CREATE_MERGED, CREATE_WHOLE, HUGE, SLOW], executor)
        server = ToolServer(registry)
        book = await server.call(
            "get_book",
            {"book_id": "b 1", "fields": "title", "x-lang": "en", "session": "s1"},
        )
        assert result_value(book) == {"id": "b 1", "fields": "title", "lang": "en", "session": "s1"}
        merged = await server.call("create_book", {"title": "Dune", "year": 1965})
        assert result_value(merged) == {"created": {"title": "Dune", "year": 1965}}
        whole = await server.call("create_raw", {"body": {"title": "Emma"}})
        assert result_value(whole) == {"created": {"title": "Emma"}}
        missing = await server.call("get_book", {"book_id": "missing"})
        assert missing.is_error
        assert result_value(missing) == {"status": 404, "body": {"detail": "no such book"}}
        too_big = await server.call("huge", {})
        assert too_big.is_error and "larger than 10000 bytes" in too_big.content[0].text
        late = await server.call("slow", {})
        assert late.is_error and "ReadTimeout" in late.content[0].text
        await executor.aclose()


@pytest.mark.anyio
async def test_http_executor_refuses_hosts_off_the_allow_list() -> None:
    executor = HttpExecutor(["api.example.com"])
    registry = ToolRegistry()
    registry.add([GET_BOOK], executor)
    result = await ToolServer(registry).call("get_book", {"book_id": "1"})
    assert result.is_error
    assert result.content[0].text == "'get_book': host 'api.invalid' is not on the allow-list"
    with pytest.raises(ToolDojoError, match="at least one allowed host"):
        HttpExecutor([])
    with pytest.raises(ToolDojoError, match="no OpenAPI HTTP binding"):
        executor.check_tools([Tool(name="plain")])
    await executor.aclose()
