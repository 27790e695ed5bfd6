"""Headless Debian chromium driven over the Chrome DevTools protocol (CDP).

Why hand-written: the protocol needs four commands here (navigate, evaluate, screenshot,
collect console events), and aiohttp (already a dependency) speaks websockets, so no
browser-automation package, and no browser download, is needed. The browser is the system's
``/usr/bin/chromium``, which ``make install`` installs when it is absent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in a container: chromium refuses its sandbox there
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


@dataclass
class PageVisit:
    """What a page did while loading: console messages, uncaught exceptions, browser log."""

    problems: list[str] = field(default_factory=list)
    """Console errors and warnings, exceptions and failed loads (should stay empty)."""
    console: list[str] = field(default_factory=list)


class Page:
    """One browser tab over its CDP websocket: send commands, record events."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.visit = PageVisit()
        self.seen: set[str] = set()
        """Event methods received so far (``Page.loadEventFired``...)."""

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=30)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._record(message)

    async def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.seen:
            self._record(await self.socket.receive_json(timeout=deadline - time.monotonic()))

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method", ""), message.get("params", {})
        self.seen.add(method)
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.visit.console.append(f"{params['type']}: {text}")
            if params["type"] in ("error", "warning", "assert"):
                self.visit.problems.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            self.visit.problems.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            entry = params["entry"]
            self.visit.problems.append(
                f"log {entry['level']}: {entry['text']} {entry.get('url', '')}"
            )

    async def open(self, url: str) -> PageVisit:
        """Load ``url`` and wait for its load event, recording problems on the way."""
        self.visit, self.seen = PageVisit(), set()
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")
        await self.send("Runtime.evaluate", expression="1")  # drain events queued by the load
        return self.visit

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(
        self, path: Path, selector: str = "body", width: int = 1200, height: int = 2000
    ) -> None:
        """A PNG of the element ``selector`` (its first ``height`` pixels) at ``width``."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x, r.y + window.scrollY, r.width, r.height]; })()"
        )
        x, y, w, h = (max(0, box[0] - 12), max(0, box[1] - 12), box[2] + 24, box[3] + 24)
        clip = {"x": x, "y": y, "width": w, "height": min(h, height), "scale": 1}
        shot = await self.send(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        path.write_bytes(base64.b64decode(shot["data"]))


async def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """The port chromium chose (``--remote-debugging-port=0`` writes it to the profile)."""
    marker = profile / "DevToolsActivePort"
    for _ in range(300):
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        await asyncio.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port in 15 s")


@asynccontextmanager
async def chromium_page() -> AsyncIterator[Page]:
    """A tab of a fresh headless chromium (own profile, no network services), closed after."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("chromium is not installed (make install installs it)")
    # Chromium's helpers (renderer, crashpad) may still write to the profile for a moment after
    # they are killed; a temporary folder left behind is no failure of the page under test.
    with tempfile.TemporaryDirectory(
        prefix="tooldojo-chromium-", ignore_cleanup_errors=True
    ) as profile:
        process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helper processes share its group: killed together
        )
        try:
            port = await _devtools_port(Path(profile), process)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = json.loads(await response.text())
                page = next(t for t in targets if t["type"] == "page")
                async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    yield Page(ws)
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """End chromium and every helper it started, then wait (bounded) until the group is gone,
    so nothing still writes to the profile folder while it is removed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # any member left (zombies included)?
        except ProcessLookupError:
            return
        time.sleep(0.05)


async def _screenshot(html: Path, out: Path, selector: str) -> None:
    async with chromium_page() as page:
        visit = await page.open(html.resolve().as_uri())
        if visit.problems:
            raise RuntimeError(f"{html}: {visit.problems}")
        await page.screenshot(out, selector)


if __name__ == "__main__":
    # python tests/browser_support.py REPORT.html OUT.png [CSS selector]: the docs' screenshots.
    import sys

    asyncio.run(_screenshot(Path(sys.argv[1]), Path(sys.argv[2]), (sys.argv[3:] or ["body"])[0]))
