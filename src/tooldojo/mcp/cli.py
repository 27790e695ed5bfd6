"""``tooldojo serve``: any tool set as a real MCP server over stdio or streamable HTTP."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tooldojo.errors import ToolDojoError

# Kept here, not imported from the factory, so `tooldojo --help` never imports the mcp SDK.
EXECUTOR_CHOICES = (
    "simulated | python:MODULE[:CLASS] | python:FILE.py[:CLASS] | bfcl[:CLASS,...] | http"
)


def serve_command(
    specs: Annotated[
        list[str] | None,
        typer.Option("--specs", help="Spec file (repeat for several); optional for python/bfcl."),
    ] = None,
    executor: Annotated[str, typer.Option(help=EXECUTOR_CHOICES)] = "simulated",
    transport: Annotated[str, typer.Option(help="stdio or http")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address (loopback by default)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="HTTP port; 0 picks a free one")] = 8000,
    token_env: Annotated[
        str | None,
        typer.Option("--token-env", help="Env var holding a bearer token HTTP clients must send"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a call may run")] = 30.0,
    model: Annotated[
        str | None, typer.Option(help="Model playing the API (simulated; default: embedded)")
    ] = None,
    failure_rate: Annotated[
        float, typer.Option(help="Share of simulated calls that fail realistically")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated failures")] = 0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option("--allow-host", help="Host the http executor may call (repeat)"),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="http executor: base URL instead of the spec's servers")
    ] = None,
) -> None:
    """Serve tools as an MCP server. Episodes are named by _meta["tooldojo/episode"]."""
    import anyio

    from tooldojo.mcp.factory import ServeOptions, build_tool_server
    from tooldojo.mcp.transports import print_ready, serve_http, serve_stdio

    if transport not in ("stdio", "http"):
        raise ToolDojoError(f"--transport must be stdio or http, not {transport!r}")
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise ToolDojoError(f"--token-env {token_env}: the variable is unset or empty")
    server = build_tool_server(
        ServeOptions(
            specs=specs or [],
            executor=executor,
            timeout_s=timeout,
            model=model,
            failure_rate=failure_rate,
            seed=seed,
            allow_hosts=allow_host or [],
            base_url=base_url,
        )
    )
    if not executor.startswith("bfcl"):  # BFCL's own pack is served for evaluation
        from tooldojo.bfcl_guard import check_tools

        hits = check_tools(server.registry.tools)  # serving is no training: warn only
        if hits:
            typer.echo(
                f"tooldojo: warning: {len(hits)} tool(s) are BFCL's (test data; synthesis and "
                f"training refuse them), e.g. {hits[0]}",
                err=True,
            )
    if transport == "stdio":
        if token:
            raise ToolDojoError("--token-env applies to --transport http only")
        typer.echo(f"tooldojo: serving {len(server.registry)} tools on stdio", err=True)
        anyio.run(serve_stdio, server)
        return

    def ready(url: str) -> None:
        typer.echo(f"tooldojo: {len(server.registry)} tools", err=True)
        print_ready(url)

    async def run_http() -> None:
        await serve_http(server, host=host, port=port, token=token, on_ready=ready)

    try:
        anyio.run(run_http)
    except OSError as error:
        raise ToolDojoError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
