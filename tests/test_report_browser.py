"""The run report opened in a real browser: Debian's headless chromium, over DevTools.

Renders the report of the fixture run (``tests/fixtures/report_run``) and checks what a
reader sees: the tables with every rate's n, the embedded figures actually decoded, the
sampled trajectories as chats, the failure and probe-error tables, escaped markup, and no
console error, exception or failed load. ``make install`` installs chromium when absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from browser_support import PageVisit, chromium_page, chromium_path
from test_report import FIXTURE, bare_percentages
from tooldojo.report import write_report

SKIP_VARIABLE = "TOOLDOJO_SKIP_BROWSER_TEST"

FACTS = """(() => {
  const images = [...document.images];
  const section = (id) => document.getElementById(id);
  const count = (root, selector) => root ? root.querySelectorAll(selector).length : -1;
  return {
    text: document.body.innerText,
    tables: count(document, "table.data"),
    rates: [...document.querySelectorAll(".rate")]
      .map(r => [+r.dataset.k, +r.dataset.n, r.innerText]),
    images: images.map(i => [i.src.slice(0, 22), i.complete && i.naturalWidth > 0]),
    injected: images.filter(i => i.getAttribute("src") === "x").length,
    trajectories: ["iter-000", "iter-001"].map(id => count(section(id), "article.trajectory")),
    users: count(document, "article.trajectory .turn.user"),
    calls: count(document, "article.trajectory .turn.assistant pre.call"),
    results: count(document, "article.trajectory .turn.tool"),
    origins: count(section("iter-001"), "article.trajectory .origin"),
    failures: count(section("iter-001"), "table.failures tbody tr"),
    probe_errors: ["iter-000", "iter-001"]
      .map(id => count(section(id), "table.probe-errors tbody tr")),
  };
})()"""


async def _visit(*pages: Path) -> list[tuple[PageVisit, dict[str, Any] | None]]:
    out = []
    async with chromium_page() as page:
        for path in pages:
            visit = await page.open(path.resolve().as_uri())
            facts = await page.evaluate(FACTS) if path.name == "report.html" else None
            out.append((visit, facts))
    return out


@pytest.fixture
def browser() -> None:
    if chromium_path() is None:
        if os.environ.get(SKIP_VARIABLE):
            pytest.skip(f"chromium absent and {SKIP_VARIABLE} set")
        pytest.fail(f"chromium is absent: `make install` installs it (or set {SKIP_VARIABLE}=1)")


def test_report_renders_in_headless_chromium(tmp_path: Path, browser: None):
    run = tmp_path / "report_run"
    shutil.copytree(FIXTURE, run)
    report = write_report(run)
    broken = tmp_path / "broken.html"  # proves the console check can fail
    broken.write_text(
        "<!doctype html><title>t</title><script>console.error('boom'); notDefined()</script>"
        "<img src='missing.png'>"
    )
    (visit, facts), (broken_visit, _) = asyncio.run(_visit(report, broken))

    assert visit.problems == [], visit.problems
    # The three problems arrive in whatever order chromium reports them (it varies under load).
    assert sorted(p.split(":")[0] for p in broken_visit.problems) == [
        "console.error",
        "exception",
        "log error",  # missing.png
    ], broken_visit.problems

    assert facts is not None
    assert facts["tables"] >= 8
    assert facts["rates"] and all(0 <= k <= n and f"{k}/{n}," in t for k, n, t in facts["rates"])
    assert bare_percentages(facts["text"]) == []
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert len(facts["images"]) == len(plots) >= 5
    assert all(src == "data:image/png;base64," and ok for src, ok in facts["images"])

    assert facts["trajectories"] == [3, 3]  # the seeded sample of each iteration
    assert facts["users"] >= 6 and facts["calls"] >= 3 and facts["results"] >= 3
    assert facts["origins"] > 0  # iter-001's messages carry their origin
    assert facts["failures"] >= 3  # format, schema and label reasons
    assert facts["probe_errors"] == [1, 1]
    # The markup in a trajectory (a tool name <img src=x onerror=...>) is text, not an element.
    assert facts["injected"] == 0 and "<img src=x onerror=" in facts["text"]
