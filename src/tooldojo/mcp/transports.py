"""Serving a :class:`ToolServer` over stdio or streamable HTTP (in-memory needs nothing:
``mcp.Client(tool_server.server)``)."""

from __future__ import annotations

import hmac
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from tooldojo.mcp.server import ToolServer

ASGIApp = Callable[..., Any]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


async def serve_stdio(tool_server: ToolServer) -> None:
    """Serve one client over this process's stdin/stdout until it closes them."""
    server = tool_server.server
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class BearerTokenMiddleware:
    """Refuses HTTP requests without ``Authorization: Bearer <token>`` (401).

    Hand-written rather than the SDK's OAuth resource-server machinery: a single shared
    secret needs no issuer, metadata routes or token introspection. Compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="tooldojo"'),
                        ],
                    }
                )
                await send(
                    {"type": "http.response.body", "body": b'{"error":"missing or wrong token"}'}
                )
                return
        await self.app(scope, receive, send)


def http_app(tool_server: ToolServer, *, host: str = "127.0.0.1", token: str | None = None) -> Any:
    """The ASGI app: the SDK's streamable-HTTP app at ``/mcp``, behind the token if given.

    The SDK turns on DNS-rebinding protection (Host/Origin checks) for loopback hosts.
    """
    app = tool_server.server.streamable_http_app(host=host)
    return BearerTokenMiddleware(app, token) if token else app


async def serve_http(
    tool_server: ToolServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    shutdown: anyio.Event | None = None,
) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until a signal or ``shutdown``.

    ``port=0`` picks a free port; ``on_ready`` receives the URL once requests are accepted.
    Setting ``shutdown`` stops gracefully (cancelling the task instead works but makes
    uvicorn log the interrupted lifespan).
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{url_host}:{bound_port}/mcp"
    config = uvicorn.Config(
        http_app(tool_server, host=host, token=token),
        log_level="warning",
        lifespan="on",
        backlog=4096,
        timeout_keep_alive=30,
    )

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if on_ready is not None and self.started:
                on_ready(url)

    server = _Server(config)

    async def stop_on_shutdown() -> None:
        assert shutdown is not None
        await shutdown.wait()
        server.should_exit = True

    try:
        async with anyio.create_task_group() as group:
            if shutdown is not None:
                group.start_soon(stop_on_shutdown)
            await server.serve(sockets=[sock])
            group.cancel_scope.cancel()
    finally:
        sock.close()


def print_ready(url: str) -> None:
    """Default readiness line on stderr (stdout belongs to the protocol on stdio)."""
    print(f"tooldojo: serving MCP on {url}", file=sys.stderr, flush=True)
