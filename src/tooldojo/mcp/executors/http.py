"""The ``http`` executor: real REST calls for OpenAPI tools. Opt-in only.

Each tool carries ``metadata["http"]`` from the OpenAPI loader: method, path template,
servers, where each argument goes (path, query, header, cookie, body) and whether the body is
the merged body arguments or the single argument ``body``. Calls reach only hosts on the
allow-list, never follow redirects (a redirect could leave the allow-list), stop after a
timeout and refuse responses larger than a limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.episodes import Episode
from tooldojo.mcp.executors.base import ToolExecutionError, ToolOutcome
from tooldojo.model import Tool

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


class HttpExecutor:
    """Calls the real API of OpenAPI tools.

    ``allowed_hosts``: host names (or ``host:port``) that may be called; required, so
    nothing is reached by accident. ``base_url`` overrides the spec's ``servers``.
    ``headers`` are added to every request (e.g. an API key).
    """

    name = "http"

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        if not self.allowed_hosts:
            raise ToolDojoError("the http executor needs at least one allowed host")
        self.base_url = base_url
        self.max_response_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, headers=headers, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def check_tools(self, tools: Iterable[Tool]) -> None:
        """Refuse, at start-up, tools this executor cannot call (no OpenAPI http metadata)."""
        for tool in tools:
            if not isinstance(tool.metadata.get("http"), dict):
                raise ToolDojoError(
                    f"tool {tool.name!r} ({tool.source}) has no OpenAPI HTTP binding; "
                    "the http executor serves OpenAPI tools only"
                )

    def build_request(self, tool: Tool, arguments: dict[str, Any]) -> httpx.Request:
        """The request a call becomes; raises :class:`ToolExecutionError` if it may not be sent."""
        http = tool.metadata.get("http")
        if not isinstance(http, dict):
            raise ToolExecutionError(f"{tool.name!r} has no HTTP binding")
        servers = http.get("servers") or []
        base = self.base_url or (servers[0] if servers else None)
        if not base:
            raise ToolExecutionError(f"{tool.name!r}: the spec names no server and no base URL")
        locations: dict[str, str] = http.get("params", {})
        path = str(http.get("path", ""))
        query: dict[str, Any] = {}
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        body: dict[str, Any] = {}
        for name, value in arguments.items():
            where = locations.get(name, "body")
            if where == "path":
                path = path.replace("{" + name + "}", quote(_scalar(value), safe=""))
            elif where == "query":
                query[name] = value if isinstance(value, list) else _scalar(value)
            elif where == "header":
                headers[name] = _scalar(value)
            elif where == "cookie":
                cookies[name] = _scalar(value)
            else:
                body[name] = value
        url = base.rstrip("/") + "/" + path.lstrip("/")
        host = urlsplit(url)
        if host.scheme not in ("http", "https"):
            raise ToolExecutionError(f"{tool.name!r}: refusing non-HTTP URL {url!r}")
        if not self._allowed(host.hostname or "", host.port):
            raise ToolExecutionError(
                f"{tool.name!r}: host {host.netloc!r} is not on the allow-list"
            )
        content: Any = None
        if http.get("body_mode") == "whole":
            content = arguments.get("body")
        elif body:
            content = body
        if cookies:
            headers["Cookie"] = "; ".join(f"{key}={value}" for key, value in cookies.items())
        return self._client.build_request(
            str(http.get("method", "GET")).upper(),
            url,
            params=query or None,
            headers=headers or None,
            json=content,
        )

    def _allowed(self, hostname: str, port: int | None) -> bool:
        hostname = hostname.lower()
        return hostname in self.allowed_hosts or f"{hostname}:{port}" in self.allowed_hosts

    async def execute(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> ToolOutcome:
        request = self.build_request(tool, arguments)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise ToolExecutionError(f"{tool.name!r}: {type(error).__name__}: {error}") from None
        try:
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > self.max_response_bytes:
                    raise ToolExecutionError(
                        f"{tool.name!r}: response larger than {self.max_response_bytes} bytes"
                    )
        finally:
            await response.aclose()
        text = data.decode(response.encoding or "utf-8", errors="replace")
        try:
            value: Any = json.loads(text) if text.strip() else None
        except ValueError:
            value = text
        if response.status_code >= 400:
            return ToolOutcome({"status": response.status_code, "body": value}, is_error=True)
        return ToolOutcome(value if value is not None else {"status": response.status_code})


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
