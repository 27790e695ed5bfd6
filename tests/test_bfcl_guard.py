"""The BFCL content guard: copies of BFCL docs and questions hit, our own specs and texts don't."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tooldojo import bfcl_guard
from tooldojo.bfcl_guard import BfclGuard, GuardHit, bfcl_data_dir
from tooldojo.model import Tool
from tooldojo.specs.loader import load_tools

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "specs"
DATA, VERSION = bfcl_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="bfcl-eval is not installed")


@pytest.fixture(scope="module")
def guard() -> BfclGuard:
    return BfclGuard.load()


def _bfcl_docs() -> list[dict[str, Any]]:
    assert DATA is not None
    docs = []
    for path in sorted(DATA.glob("BFCL_v4_*.json")):
        if "format_sensitivity" in path.name:
            continue
        for line in path.read_text().splitlines():
            docs.extend(json.loads(line).get("function") or [])
    for path in sorted((DATA / "multi_turn_func_doc").glob("*.json")):
        docs.extend(json.loads(line) for line in path.read_text().splitlines())
    return docs


def _tool(name: str, description: str, properties: dict[str, Any], source: str = "") -> Tool:
    # BFCL writes "dict"/"float" types; the guard reads only descriptions and names.
    cleaned = {
        key: {"description": str(doc.get("description", ""))} for key, doc in properties.items()
    }
    return Tool(
        name=name,
        description=description,
        parameters={"type": "object", "properties": cleaned},
        source=source,
    )


def _bfcl_question(category: str, index: int) -> str:
    assert DATA is not None
    line = (DATA / f"BFCL_v4_{category}.json").read_text().splitlines()[index]
    return json.loads(line)["question"][0][0]["content"]


def test_load_is_cached_in_process_and_on_disk(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path))
    bfcl_guard._load_cached.cache_clear()
    try:
        started = time.perf_counter()
        built = BfclGuard.load()
        build_s = time.perf_counter() - started
        assert BfclGuard.load() is built
        [cache] = tmp_path.glob(f"bfcl_guard-*{VERSION}*.pickle")
        bfcl_guard._load_cached.cache_clear()
        started = time.perf_counter()
        loaded = BfclGuard.load()
        load_s = time.perf_counter() - started
    finally:
        bfcl_guard._load_cached.cache_clear()
    assert loaded is not built and loaded.size == built.size
    docs, questions = loaded.size
    assert docs > 3000 and questions > 5000, loaded.size
    assert load_s < 2.0, f"warm load {load_s:.2f}s (cold build {build_s:.2f}s)"
    assert cache.stat().st_size > 0


def test_renamed_copies_of_held_out_bfcl_docs_hit(guard: BfclGuard) -> None:
    """Seed 7 (thresholds were chosen on seed 1): every renamed copy hits, and most copies
    that also lost a parameter or their description's last sentence."""
    rng = random.Random(7)
    docs = rng.sample(_bfcl_docs(), 400)
    renamed = dropped = dropped_hits = 0
    for number, doc in enumerate(docs):
        properties = (doc.get("parameters") or {}).get("properties") or {}
        name = f"helper_tool_{number}"
        copy = _tool(name, doc.get("description", ""), properties)
        hit = guard.tool_hit(copy)
        assert hit is not None and hit.kind == "tool_doc", (doc["name"], hit)
        renamed += 1
        if len(properties) >= 2:
            fewer = dict(properties)
            fewer.pop(rng.choice(sorted(fewer)))
            dropped += 1
            dropped_hits += guard.tool_hit(_tool(name, copy.description, fewer)) is not None
    assert renamed == 400
    assert dropped_hits >= 0.9 * dropped, (dropped_hits, dropped)


def test_same_name_with_a_reworded_doc_hits(guard: BfclGuard) -> None:
    doc = next(d for d in _bfcl_docs() if d["name"] == "calculate_triangle_area")
    properties = doc["parameters"]["properties"]
    tool = _tool("calculate_triangle_area", "Area of a triangle from base and height.", properties)
    hit = guard.tool_hit(tool)
    assert hit is not None and hit.kind == "tool_name", hit
    # The same name over an unrelated doc is no copy.
    assert guard.tool_hit(_tool("calculate_triangle_area", "Book a table.", {})) is None


def test_example_specs_have_no_false_positive(guard: BfclGuard) -> None:
    """All 38 tools of our examples (get_current_weather shares a BFCL name) pass."""
    tools = load_tools(sorted(str(path) for path in EXAMPLES.iterdir()))
    assert len(tools) == 38
    hits = [hit for tool in tools if (hit := guard.tool_hit(tool)) is not None]
    assert hits == []
    assert max(guard.doc_similarity(tool)[0] for tool in tools) < bfcl_guard.RENAMED_DOC_JACCARD


def test_bfcl_sources_hit_whatever_the_doc(guard: BfclGuard) -> None:
    for source in (
        "bfcl:bfcl_eval.eval_checker.multi_turn_eval.func_source_code.math_api.MathAPI.add",
        "python:bfcl_eval.eval_checker.multi_turn_eval.func_source_code.math_api:MathAPI",
    ):
        hit = guard.tool_hit(_tool("anything", "Unrelated.", {}, source=source))
        assert hit is not None and hit.kind == "tool_source"


def test_bfcl_environment_tools_hit_by_content(guard: BfclGuard) -> None:
    """The multi-turn pack served under another source (as a live MCP server would)."""
    from tooldojo.mcp.bfcl_pack import bfcl_executor

    tools = bfcl_executor().tools
    assert len(tools) > 100
    missed = []
    for tool in tools:
        disguised = tool.model_copy(update={"source": "mcp:stdio:python server.py"})
        if guard.tool_hit(disguised) is None:
            missed.append(tool.name)
    assert missed == []


def test_questions_hit_verbatim_embedded_and_lightly_edited(guard: BfclGuard) -> None:
    question = _bfcl_question("simple_python", 0)
    for text in (
        question,
        f"Hi there! {question} Thanks a lot.",
        question.replace("10 units", "12 units"),
        question.upper(),
    ):
        hit = guard.text_hit(text)
        assert isinstance(hit, GuardHit) and hit.kind == "question", text
        assert hit.bfcl_id.startswith("simple_python_0")
    long_question = _bfcl_question("multi_turn_base", 0)
    assert guard.text_hit(long_question) is not None


def test_unrelated_and_short_generic_texts_pass(guard: BfclGuard) -> None:
    for text in (
        "",
        "What is my first name?",
        "Find the weather in Paris tomorrow and convert 20 euros to dollars please.",
        "List my calendar events for next Monday and book a free slot for the team sync.",
        "Compute the area of a circle of radius 2.5 cm, then round it to two decimals.",
    ):
        assert guard.text_hit(text) is None, text


def test_example_spec_descriptions_are_no_questions(guard: BfclGuard) -> None:
    tools = load_tools(sorted(str(path) for path in EXAMPLES.iterdir()))
    assert [tool.name for tool in tools if guard.text_hit(tool.description)] == []


def test_missing_bfcl_eval_gives_an_empty_guard() -> None:
    empty = BfclGuard(None)
    assert empty.size == (0, 0)
    assert empty.tool_hit(_tool("calculate_triangle_area", "x", {})) is None
    assert empty.text_hit(_bfcl_question("simple_python", 0)) is None
