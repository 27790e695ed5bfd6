"""Spec ingestion: every input kind, normalized into meta-schema-valid tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from tooldojo import SpecError, Tool, load_tools
from tooldojo.specs import export_tools, sanitize_name

EXAMPLES = Path(__file__).parent.parent / "examples" / "specs"


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {tool.name: tool for tool in tools}


def assert_valid_schemas(tools: list[Tool]) -> None:
    for tool in tools:
        Draft202012Validator.check_schema(tool.parameters)
        assert tool.parameters["type"] == "object"
        if tool.output_schema is not None:
            Draft202012Validator.check_schema(tool.output_schema)


def write(tmp_path: Path, name: str, payload: object) -> str:
    path = tmp_path / name
    if isinstance(payload, str):
        path.write_text(payload)
    elif name.endswith((".yaml", ".yml")):
        path.write_text(yaml.safe_dump(payload))
    else:
        path.write_text(json.dumps(payload))
    return str(path)


def test_all_examples_ingest_with_unique_valid_tools():
    tools = load_tools(sorted(str(p) for p in EXAMPLES.iterdir()))
    assert len(tools) == len({t.name for t in tools}) >= 30
    assert_valid_schemas(tools)
    sources = {t.source.split(":")[0] for t in tools}
    assert sources == {"openapi", "openai", "bfcl"}


def test_openapi30_merges_path_query_header_and_body_parameters():
    tools = by_name(load_tools(str(EXAMPLES / "bookstore.openapi30.yaml")))
    create = tools["createBook"]
    http = create.metadata["http"]
    assert http["method"] == "POST" and http["path"] == "/books"
    assert http["params"]["X-Store-Id"] == "header"
    assert http["params"]["title"] == "body" and http["body_mode"] == "merged"
    assert "X-Store-Id" in create.required and "title" in create.required
    # readOnly fields never become inputs.
    assert "id" not in create.properties
    listing = tools["listBooks"]
    assert listing.metadata["http"]["params"]["page"] == "query"
    # $ref'd component parameter resolved, with its bounds.
    assert listing.properties["page_size"]["maximum"] >= 1
    get = tools["getBook"]
    assert get.required == ["bookId"] and get.metadata["http"]["params"]["bookId"] == "path"
    assert get.output_schema is not None and "allOf" in get.output_schema  # Book = id + NewBook


def test_openapi_without_operation_id_uses_method_and_path():
    tools = by_name(load_tools(str(EXAMPLES / "bookstore.openapi30.yaml")))
    delete = tools["delete_books_bookId"]
    assert delete.original_name == "delete_/books/{bookId}"
    assert delete.output_schema is None  # 204 has no body


def test_openapi30_nullable_and_boolean_exclusive_bounds(tmp_path):
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/items": {
                "post": {
                    "operationId": "items.create",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["price"],
                                    "properties": {
                                        "price": {
                                            "type": "number",
                                            "minimum": 0,
                                            "exclusiveMinimum": True,
                                            "example": 3.5,
                                        },
                                        "note": {"type": "string", "nullable": True},
                                        "kind": {
                                            "type": "string",
                                            "enum": ["a", "b"],
                                            "nullable": True,
                                        },
                                        "x-internal": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"201": {"description": "ok"}},
                }
            }
        },
    }
    (tool,) = load_tools(write(tmp_path, "s.yaml", spec))
    assert tool.name == "items_create" and tool.original_name == "items.create"
    price = tool.properties["price"]
    assert price["exclusiveMinimum"] == 0 and "minimum" not in price
    assert price["examples"] == [3.5] and "example" not in price
    assert tool.properties["note"]["type"] == ["string", "null"]
    assert tool.properties["kind"]["enum"] == ["a", "b", None]
    assert tool.required == ["price"]
    assert_valid_schemas([tool])


def test_openapi31_path_level_parameters_and_refs():
    tools = by_name(load_tools(str(EXAMPLES / "calendar.openapi31.json")))
    assert_valid_schemas(list(tools.values()))
    get_event = tools["getEvent"]
    assert {"calendarId", "eventId"} <= set(get_event.required)
    assert get_event.metadata["http"]["params"]["eventId"] == "path"
    assert "$ref" not in json.dumps(get_event.parameters)


def test_recursive_schema_is_kept_in_defs_not_expanded():
    tools = by_name(load_tools(str(EXAMPLES / "bookstore.openapi30.yaml")))
    create = tools["createCategory"]
    assert create.properties["body"] == {"$ref": "#/$defs/Category"}
    category = create.parameters["$defs"]["Category"]
    assert category["properties"]["subcategories"]["items"] == {"$ref": "#/$defs/Category"}
    validator = Draft202012Validator(create.parameters)
    tree = {"body": {"slug": "sf", "name": "SF", "subcategories": [{"slug": "x", "name": "X"}]}}
    assert validator.is_valid(tree)
    assert not validator.is_valid({"body": {"slug": "sf", "name": "SF", "subcategories": [{}]}})
    output = tools["listCategories"].output_schema
    assert output["items"] == {"$ref": "#/$defs/Category"} and "Category" in output["$defs"]


def test_body_that_is_not_an_object_is_kept_whole(tmp_path):
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/tags/{id}": {
                "put": {
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                        {"name": "id", "in": "query", "schema": {"type": "string"}},
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"type": "string"}}
                            }
                        }
                    },
                }
            }
        },
    }
    (tool,) = load_tools(write(tmp_path, "s.json", spec))
    assert tool.name == "put_tags_id"
    assert set(tool.properties) == {"id", "query_id", "body"}
    http = tool.metadata["http"]
    assert http["body_mode"] == "whole" and http["wire_names"] == {"query_id": "id"}
    assert tool.required == ["id"]  # the body is optional


def test_openai_tools_and_bare_functions(tmp_path):
    tools = load_tools(str(EXAMPLES / "weather_finance.openai.json"))
    assert len(tools) >= 10
    weather = by_name(tools)["get_current_weather"]
    assert weather.required == ["location"]
    bare = [
        {"name": "ping", "description": "Check liveness"},
        {"name": "echo", "parameters": {"properties": {"text": {"type": "string"}}}},
    ]
    ping, echo = load_tools(write(tmp_path, "bare.json", bare))
    assert ping.parameters == {"type": "object", "properties": {}}
    assert echo.parameters["type"] == "object" and echo.source.startswith("openai:")


def test_bfcl_docs_translate_python_type_names(tmp_path):
    tools = by_name(load_tools(str(EXAMPLES / "geo_math.bfcl.json")))
    assert_valid_schemas(list(tools.values()))
    text = json.dumps([t.parameters for t in tools.values()])
    for bfcl_only in ('"dict"', '"float"', '"tuple"', '"any"'):
        assert bfcl_only not in text
    point = tools["geo_point_in_polygon"]
    assert point.original_name == "geo.point_in_polygon"
    assert point.properties["point"]["type"] == "array"
    assert "type" not in tools["math_round_to"].properties["value"]  # "any"
    # BFCL's JSON Lines data format: functions collected once across entries.
    line = {
        "id": "x_0",
        "question": [],
        "function": [
            {
                "name": "calc.add",
                "description": "Add",
                "parameters": {
                    "type": "dict",
                    "properties": {"a": {"type": "float"}},
                    "required": ["a"],
                },
            }
        ],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "id": "x_1"}) + "\n")
    (add,) = load_tools(str(path))
    assert add.name == "calc_add" and add.properties["a"] == {"type": "number"}


def test_saved_mcp_tools_list_plain_and_json_rpc(tmp_path):
    listed = {
        "tools": [
            {
                "name": "read_file",
                "description": "Read a file",
                "inputSchema": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                },
                "outputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
                "annotations": {"readOnlyHint": True},
            }
        ]
    }
    (plain,) = load_tools(write(tmp_path, "a.json", listed))
    (wrapped,) = load_tools(
        write(tmp_path, "b.json", {"jsonrpc": "2.0", "id": 1, "result": listed})
    )
    assert plain.required == ["path"] and plain.output_schema["type"] == "object"
    assert plain.metadata["annotations"] == {"readOnlyHint": True}
    assert wrapped.parameters == plain.parameters


def test_inspect_json_output_reingests_identically(tmp_path):
    tools = load_tools(sorted(str(p) for p in EXAMPLES.iterdir()))
    dumped = [t.model_dump(mode="json", exclude_none=True) for t in tools]
    again = load_tools(write(tmp_path, "tools.json", dumped))
    assert again == tools


@pytest.mark.parametrize("fmt", ["openai", "mcp"])
def test_export_round_trips_schemas(tmp_path, fmt):
    tools = load_tools(sorted(str(p) for p in EXAMPLES.iterdir()))
    again = load_tools(write(tmp_path, f"x.{fmt}.json", export_tools(tools, fmt)))
    assert [t.name for t in again] == [t.name for t in tools]
    assert [t.parameters for t in again] == [t.parameters for t in tools]


def test_export_bfcl_uses_bfcl_types_and_original_names(tmp_path):
    tools = load_tools(str(EXAMPLES / "geo_math.bfcl.json"))
    exported = export_tools(tools, "bfcl")
    assert exported[0]["parameters"]["type"] == "dict"
    assert {d["name"] for d in exported} == {t.original_name for t in tools}
    again = load_tools(write(tmp_path, "again.json", exported))
    assert [t.parameters for t in again] == [t.parameters for t in tools]


def test_sanitize_name_is_deterministic_and_bounded():
    assert sanitize_name("math.factorial") == "math_factorial"
    assert sanitize_name("get_/users/{id}/posts") == "get_users_id_posts"
    long_a, long_b = sanitize_name("x" * 80 + "a"), sanitize_name("x" * 80 + "b")
    assert len(long_a) <= 64 and long_a != long_b
    assert sanitize_name("!!!") == "tool"


def test_two_thousand_operation_document_converts(tmp_path):
    """Correctness at scale; the timing lives in bench/bench_openapi_ingest.py."""
    from bench.bench_openapi_ingest import make_openapi

    tools = load_tools(write(tmp_path, "big.json", make_openapi(2000)))
    assert len(tools) == 2000 and len({t.name for t in tools}) == 2000


def test_errors_are_spec_errors_with_file_and_place(tmp_path):
    path = write(tmp_path, "broken.json", '{"openapi": "3.0.0",\n "paths": [}')
    with pytest.raises(SpecError) as caught:
        load_tools(path)
    assert str(caught.value).startswith(f"{path} at line 2:")


def test_single_function_object_file(tmp_path):
    (tool,) = load_tools(write(tmp_path, "one.json", {"name": "now", "description": "Time"}))
    assert tool.name == "now" and tool.parameters["type"] == "object"
    with pytest.raises(SpecError, match=r"one_bad.json at /parameters/type"):
        load_tools(write(tmp_path, "one_bad.json", {"name": "f", "parameters": {"type": "x"}}))
