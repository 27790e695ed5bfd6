"""`tooldojo specs refine` on small committed fixtures (trimmed APIs.guru-style specs).

Each filter, the cleaning, the merge, the graph, domains and the BFCL overlap exclusion is
checked on a fixture operation that must trigger it *and* one that must not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs import load_tools
from tooldojo.specs.refine import RefineOptions, refine
from tooldojo.specs.refine.clean import cap, readable_name, strip_markup
from tooldojo.specs.refine.domains import assign_clusters, spec_category
from tooldojo.specs.refine.filters import (
    MAX_PARAMETERS,
    drop_reason,
    has_binary_body,
    is_health_or_auth,
    strip_parameters,
)
from tooldojo.specs.refine.graph import build_graph
from tooldojo.specs.refine.merge import merge_near_duplicates
from tooldojo.specs.refine.report import RefineReport, check_funnel

FIXTURES = Path(__file__).parent / "fixtures" / "corpus" / "api"


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    out = tmp_path_factory.mktemp("refined")
    report = refine([str(FIXTURES)], out, RefineOptions(workers=1))
    records = [json.loads(line) for line in (out / "registry.jsonl").read_text().splitlines()]
    return out, report, {r["name"]: r for r in records}


def by_original(records: dict, original: str) -> list[dict]:
    return [r for r in records.values() if r.get("original_name") == original]


# --- the funnel and each filter --------------------------------------------------------------


def test_funnel_adds_up_and_counts_every_reason(refined):
    _, report, records = refined
    assert check_funnel(report) == []
    assert report.files == 7 and report.specs_read == 5
    assert report.dropped == {
        "deprecated": 1,  # DELETE /pets/{petId}
        "health_or_auth": 2,  # /health, /auth/login
        "no_description": 1,  # petStats
        "nothing_to_ask": 1,  # getInventory
        "unconvertible": 1,  # a $ref to nowhere
        "too_many_params": 1,  # 21 query parameters
        "binary_body": 1,  # octet-stream upload
        "invalid_schema": 1,  # "type": "moment"
    }
    assert report.tools_written == len(records) == 13


def test_check_funnel_catches_a_miscount():
    report = RefineReport(operations_seen=10, dropped={"deprecated": 2}, kept_after_filters=7)
    report.tools_written = 7
    report.domains = {"x": 7}
    assert check_funnel(report) == ["seen 10 - dropped 2 != kept 7"]


def _tool(props: dict, *, path: str = "/things", locations: dict | None = None, **extra) -> Tool:
    http = {"method": "GET", "path": path, "params": locations or dict.fromkeys(props, "query")}
    return Tool(
        name=extra.pop("name", "getThings"),
        description=extra.pop("description", "Get the things of a user."),
        parameters={"type": "object", "properties": props},
        metadata={"http": http, **extra},
    )


def test_parameter_cap_is_exact():
    at_cap = _tool({f"p{i}": {"type": "string"} for i in range(MAX_PARAMETERS)})
    over = _tool({f"p{i}": {"type": "string"} for i in range(MAX_PARAMETERS + 1)})
    args = {"had_description": True, "body_media": None, "description": "Get the things."}
    assert drop_reason(at_cap, **args) is None
    assert drop_reason(over, **args) == "too_many_params"


def test_description_and_nothing_to_ask_filters():
    tool = _tool({"q2": {"type": "string"}})
    assert drop_reason(tool, had_description=False, body_media=None, description="x" * 40) == (
        "no_description"
    )
    assert drop_reason(tool, had_description=True, body_media=None, description="Too short") == (
        "no_description"
    )
    continuation = _tool({"nextLink": {"type": "string"}}, name="Things_ListNext")
    continuation.parameters["required"] = ["nextLink"]
    assert drop_reason(
        continuation, had_description=True, body_media=None, description="A" * 20
    ) == ("nothing_to_ask")
    empty = _tool({})
    assert drop_reason(empty, had_description=True, body_media=None, description="A" * 20) == (
        "nothing_to_ask"
    )


def test_binary_bodies_and_health_auth_paths():
    assert has_binary_body(_tool({"body": {"type": "string"}}), "application/octet-stream")
    assert has_binary_body(_tool({"file": {"type": "string", "format": "binary"}}), None)
    assert not has_binary_body(_tool({"name": {"type": "string"}}), "application/json")
    assert is_health_or_auth("/v1/health", "")
    assert is_health_or_auth("/oauth2/token", "")
    assert is_health_or_auth("/x", "refreshToken")
    assert not is_health_or_auth("/orders/{id}/status", "getOrderStatus")
    assert not is_health_or_auth("/authors/{id}", "getAuthor")


def test_credentials_and_plumbing_are_stripped_not_dropped(refined):
    _, report, records = refined
    (list_pets,) = [
        r for r in by_original(records, "listPets") if "tag" in r["parameters"]["properties"]
    ]
    assert list(list_pets["parameters"]["properties"]) == ["tag"]
    assert "required" not in list_pets["parameters"]  # the required token header went too
    http = list_pets["metadata"]["http"]
    assert http["stripped_credentials"] == ["X-Petstore-Token", "api_key"]
    assert set(http["params"]) == {"tag"}
    assert report.credentials_stripped >= 2 and report.plumbing_stripped >= 1


def test_body_fields_named_like_credentials_stay():
    tool = _tool(
        {"token": {"type": "string"}, "apikey": {"type": "string"}, "key": {"type": "string"}},
        locations={"token": "body", "apikey": "query", "key": "path"},
    )
    stripped, credentials, _ = strip_parameters(tool, set())
    assert credentials == ["apikey"]
    assert list(stripped.properties) == ["token", "key"]


def test_vendor_headers_are_stripped_and_plain_headers_stay():
    names = ["X-Bunq-Client-Authentication", "X-Bunq-Region", "x-apideck-consumer-id", "Depth"]
    tool = _tool(
        {name: {"type": "string"} for name in [*names, "X-Region"]},
        locations={**dict.fromkeys(names, "header"), "X-Region": "body"},
    )
    stripped, credentials, plumbing = strip_parameters(tool, set())
    assert credentials == ["X-Bunq-Client-Authentication"]
    assert plumbing == ["X-Bunq-Region", "x-apideck-consumer-id"]
    # A header without the vendor prefix, and a body field that merely looks like one, stay.
    assert list(stripped.properties) == ["Depth", "X-Region"]


def test_vendor_key_headers_and_constants_are_stripped():
    tool = _tool(
        {
            "X-API2CRM-USER-KEY": {"type": "string"},
            "Action": {"type": "string", "enum": ["ListTags"]},
            "Kind": {"type": "string", "enum": ["a", "b"]},
            "SerialNumber": {"type": "string"},
        },
        locations={"X-API2CRM-USER-KEY": "header", "Action": "query", "Kind": "query",
                   "SerialNumber": "query"},
    )  # fmt: skip
    tool.parameters["required"] = ["X-API2CRM-USER-KEY", "Action", "Kind", "SerialNumber"]
    stripped, credentials, plumbing = strip_parameters(tool, set())
    assert (credentials, plumbing) == (["X-API2CRM-USER-KEY"], ["Action"])
    assert stripped.required == ["Kind", "SerialNumber"]
    assert stripped.metadata["http"]["constants"] == {"Action": "ListTags"}


# --- cleaning --------------------------------------------------------------------------------


def test_markup_is_stripped_and_lengths_capped(refined):
    _, _, records = refined
    (list_pets,) = [
        r for r in by_original(records, "listPets") if "tag" in r["parameters"]["properties"]
    ]
    assert list_pets["description"] == (
        "List all pets in the store. Returns every pet, optionally filtered by tag. See the docs."
    )
    assert list_pets["parameters"]["properties"]["tag"]["description"] == "Only pets with this tag"
    assert strip_markup("<p>A &amp; B</p>\n\n## Head\n- `x` item") == "A & B Head x item"
    long = "First sentence is here. " + "word " * 100
    assert cap(long, 40) == "First sentence is here."
    assert len(cap("word " * 100, 50)) <= 53


def test_readable_names_for_operations_without_an_id(refined):
    _, _, records = refined
    assert readable_name("get", "/v1/owners/{ownerId}/pets/{petId}") == (
        "get_owners_pets_by_owner_id_and_pet_id"
    )
    assert readable_name("get", "/pets") == "list_pets"
    assert readable_name("get", "/users/{id}/repos") == "list_users_repos_by_id"
    assert readable_name("post", "/pets") == "create_pets"
    assert by_original(records, "GET /owners/{ownerId}/pets/{petId}")[0]["name"] == (
        "get_owners_pets_by_owner_id_and_pet_id"
    )


# --- merge, domains, graph -------------------------------------------------------------------


def test_near_duplicates_merge_only_with_the_same_parameters(refined):
    _, report, records = refined
    assert report.merged == 2  # listPets and showPetById of the mirror API
    lists = by_original(records, "listPets")
    assert len(lists) == 1 and lists[0]["metadata"]["merged"] == 1
    assert by_original(records, "listPetsByColor"), "same words, other parameter: kept"


def test_merge_unit():
    def record(name, description, params):
        return {
            "name": name,
            "original_name": name.rstrip("0123456789"),  # renamed apart by API, like the corpus
            "description": description,
            "parameters": {"type": "object", "properties": {p: {} for p in params}},
            "metadata": {},
        }

    a = record("getWeather", "Current weather for a city, in celsius", ["city"])
    b = record("getWeather2", "Current weather for a city, in celsius", ["city"])
    c = record("getWeather3", "Current weather for a city, in celsius", ["city", "units"])
    d = record("listInvoices", "All invoices of a customer account", ["customerId"])
    kept, merged = merge_near_duplicates([a, b, c, d])
    assert [r["name"] for r in kept] == ["getWeather", "getWeather3", "listInvoices"]
    assert merged == {"getWeather2": "getWeather"}


def test_domains_from_apisguru_else_nearest_cluster(refined):
    _, _, records = refined
    assert records["searchPlaces"]["metadata"]["domain"] == "location"
    assert records["searchPlaces"]["metadata"]["domain_from"] == "apisguru"
    forecast = records["getForecast"]["metadata"]
    assert (forecast["domain"], forecast["domain_from"]) == ("location", "cluster")
    assert spec_category({"x-apisguru-categories": "security"}) == "security"
    assert spec_category({"x-apisguru-categories": ["Open Data"]}) == "open_data"
    assert spec_category({"x-apisguru-categories": list("security")}) == "security"
    assert spec_category({}) is None
    lonely = {"name": "zzz", "description": "qqq", "parameters": {}, "metadata": {}}
    assign_clusters([lonely, {**records["searchPlaces"]}])
    assert lonely["metadata"]["domain"] == "other"


def test_graph_edges_by_name_and_type_within_one_api(refined):
    _, _, records = refined
    # placeId (id-like) and city (required by the timezone lookup) are in the response
    assert records["searchPlaces"]["metadata"]["graph"]["feeds"] == [
        "getPlace",
        "get_cities_timezone_by_city",
    ]
    assert records["findOwner"]["metadata"]["graph"]["feeds"] == [
        "getOwner",
        "get_owners_pets_by_owner_id_and_pet_id",
    ]
    (list_pets,) = by_original(records, "listPets")
    (show,) = by_original(records, "showPetById")
    assert list_pets["metadata"]["graph"]["feeds"] == [show["name"]]
    # city is in searchPlaces' response, but getForecast is another API: no edge
    for record in records.values():
        for target in record["metadata"]["graph"]["feeds"]:
            assert records[target]["metadata"]["api"] == record["metadata"]["api"]


def test_graph_needs_a_type_match_and_skips_generic_names():
    producer = Tool(
        name="listOrders",
        description="List orders.",
        parameters={"type": "object", "properties": {}},
        output_schema={
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"orderId": {"type": "string"}, "page": {"type": "integer"}},
            },
        },
    )
    wants_string = _tool({"orderId": {"type": "string"}}, name="getOrder")
    wants_bool = _tool({"orderId": {"type": "boolean"}}, name="flagOrder")
    wants_page = _tool({"page": {"type": "integer"}}, name="listThings")
    graph = build_graph([producer, wants_string, wants_bool, wants_page])
    assert graph == {"listOrders": ["getOrder"]}


# --- BFCL overlap, bad input, CLI ------------------------------------------------------------


def test_bfcl_overlaps_are_listed_and_excluded_by_default(refined, tmp_path):
    out, report, records = refined
    assert "calculate_triangle_area" not in records
    assert [hit["tool"] for hit in report.bfcl_overlaps] == ["calculate_triangle_area"]
    assert report.bfcl_excluded == 1
    assert "calculate_triangle_area" in (out / "refine_report.md").read_text()
    kept = refine([str(FIXTURES / "geometry.example.com.json")], tmp_path, RefineOptions(
        workers=1, keep_bfcl_overlaps=True
    ))  # fmt: skip
    assert kept.bfcl_excluded == 0 and len(kept.bfcl_overlaps) == 1
    names = [json.loads(x)["name"] for x in (tmp_path / "registry.jsonl").read_text().splitlines()]
    assert "calculate_triangle_area" in names


def test_unreadable_specs_are_one_clean_line_each(refined):
    out, report, _ = refined
    assert report.unreadable == [
        "broken.example.com.json at line 2:1: invalid JSON: Expecting ',' delimiter",
        "legacy.example.com.json at /swagger: Swagger 2.0 is not supported (OpenAPI 3 only)",
    ]
    saved = json.loads((out / "refine_report.json").read_text())
    assert saved["unreadable"] == report.unreadable
    assert saved["tools_written"] == 13 and saved["domain_count"] == 3


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tooldojo.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_refines_and_a_missing_source_exits_2(tmp_path):
    broken = tmp_path / "in" / "bad.json"
    broken.parent.mkdir()
    broken.write_text("{ not json")
    (tmp_path / "in" / "geo.json").write_text((FIXTURES / "geo.example.org.json").read_text())
    result = _cli("specs", "refine", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "refine_report.json").read_text())
    assert report["unreadable"] == ["bad.json at line 1:3: invalid JSON: Expecting property name "
                                    "enclosed in double quotes"]  # fmt: skip
    assert report["tools_written"] == 3

    missing = tmp_path / "nowhere"
    result = _cli(
        "specs", "refine", str(tmp_path / "in"), str(missing), "--out", str(tmp_path / "o2")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {missing}: no such file or folder"
    assert not (tmp_path / "o2").exists()


# --- the registry as --specs -----------------------------------------------------------------


def test_registry_loads_as_specs_with_metadata(refined, tmp_path):
    out, _, records = refined
    tools = load_tools([str(out / "registry.jsonl")])
    assert {t.name for t in tools} == set(records)
    place = next(t for t in tools if t.name == "searchPlaces")
    assert place.metadata["domain"] == "location"
    assert place.metadata["graph"] == {"feeds": ["getPlace", "get_cities_timezone_by_city"]}
    assert place.metadata["source"] == "openapi:geo.example.org.json"

    bad = tmp_path / "registry.jsonl"
    lines = (out / "registry.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["name"] = "has space"
    bad.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n")
    with pytest.raises(SpecError, match=r"registry.jsonl at line 2: not a tool record"):
        load_tools([str(bad)])


async def _plan_over_registry(registry: Path, out: Path):
    from tooldojo.llm.scripted import ScriptedChatModel
    from tooldojo.synth.pipeline import SynthRequest, prepare_run

    def nobody(_messages, _tools):
        raise AssertionError("planning must not call a model")

    models = {role: ScriptedChatModel(nobody) for role in ("user", "assistant", "server")}
    request = SynthRequest(
        specs=[str(registry)], n=12, out=out, values="schema", models=models, config=None
    )
    return await prepare_run(request)


@pytest.mark.anyio
async def test_synth_plans_over_the_refined_registry(refined, tmp_path):
    out, _, records = refined
    prepared = await _plan_over_registry(out / "registry.jsonl", tmp_path / "synth")
    assert len(prepared.scenarios) >= 12
    offered = {name for s in prepared.scenarios for name in s.tools}
    assert offered and offered <= set(records)


def test_patterns_python_cannot_compile_are_removed_and_schemas_checked_like_the_server():
    from tooldojo.specs.refine.schemas import drop_bad_patterns, server_valid

    schema = {
        "type": "object",
        "properties": {
            "tag": {"type": "string", "pattern": "^[\\p{L}\\p{N}]+$"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        },
    }
    assert not server_valid(schema)  # the MCP server would refuse the tool
    fixed, removed = drop_bad_patterns(schema)
    assert removed == 1 and server_valid(fixed)
    assert fixed["properties"]["tag"] == {"type": "string"}
    assert fixed["properties"]["code"]["pattern"] == "^[A-Z]{3}$"
    assert not server_valid({"type": "object", "properties": {"when": {"type": "moment"}}})


def test_the_server_accepts_every_refined_tool_without_rechecking(refined):
    from tooldojo.errors import ToolDojoError
    from tooldojo.mcp.registry import ToolRegistry, compile_validator

    out, _, _ = refined
    tools = load_tools([str(out / "registry.jsonl")])
    assert all(t.metadata["schema_checked"] == "2020-12+formats" for t in tools)
    for tool in tools:  # the full check, as for any other tool: refine's check is the same
        compile_validator(tool.parameters, tool.name)
    registry = ToolRegistry()
    registry.add(tools, executor=None)
    assert registry.get("searchPlaces") is not None
    bad = {"type": "object", "properties": {"x": {"type": "moment"}}}
    with pytest.raises(ToolDojoError, match="invalid JSON Schema"):
        compile_validator(bad, "tool 'x' parameters")
    compile_validator(bad, "tool 'x' parameters", checked=True)  # trusted: not re-checked


def test_shallow_response_schemas_are_valid_by_construction():
    from tooldojo.specs.refine.schemas import server_valid
    from tooldojo.specs.refine.shallow import shallow_schema

    doc = {
        "Pet": {
            "type": "object",
            "properties": {
                "id": {"type": "int"},  # not a JSON type
                "photo": {"type": "file", "description": 3},
                "tags": {"type": "array", "items": {"$ref": "#/Tag"}},
                "owner": {"$ref": "#/Owner"},
                "kind": {"enum": "cat"},
            },
        },
        "Tag": {"type": "object", "properties": {"label": {"type": "string"}}},
        "Owner": {"type": "object", "properties": {"pet": {"$ref": "#/Pet"}}},
    }

    def lookup(ref, _where):
        return doc[ref.removeprefix("#/")]

    shallow = shallow_schema({"$ref": "#/Pet"}, lookup)
    assert server_valid(shallow)
    props = shallow["properties"]
    assert props["id"] == {} and props["photo"] == {} and props["kind"] == {}
    assert props["tags"]["items"]["properties"] == {"label": {"type": "string"}}
    # two object levels; the cycle back to Pet is cut
    assert props["owner"] == {"type": "object", "properties": {"pet": {"type": "object"}}}


def test_api_cap_keeps_a_seeded_sample_and_counts_the_rest(tmp_path):
    spec = str(FIXTURES / "petstore.example.com.json")

    def run(out):
        report = refine([spec], out, RefineOptions(workers=1, max_per_api=2))
        names = [json.loads(x)["name"] for x in (out / "registry.jsonl").read_text().splitlines()]
        return report, names

    report, names = run(tmp_path / "a")
    assert len(names) == 2 and check_funnel(report) == []
    assert report.dropped["api_cap"] >= 3  # the petstore keeps 7 without a cap
    assert run(tmp_path / "b")[1] == names  # the sample is the same every run
