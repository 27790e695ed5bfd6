"""Bounded response schemas: every value fits the token budget, and narrows the original."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from tooldojo.llm.llamacpp import schema_grammar
from tooldojo.mcp.executors.response_schema import (
    Bounds,
    UnboundedSchema,
    bounded_schema,
    generic_result_schema,
    plan_response,
    token_bound,
)

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "note": {"type": "string", "maxLength": 10},
        "created": {"type": "string", "format": "date-time"},
        "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["id", "items"],
    "$defs": {
        "item": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "child": {"$ref": "#/$defs/item"}},
            "required": ["sku"],
        }
    },
}


def _longest(schema):  # the longest value the bounded schema admits, built by hand
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(json.dumps(v)))
    if "anyOf" in schema:
        return max((_longest(o) for o in schema["anyOf"]), key=lambda v: len(json.dumps(v)))
    kind = schema.get("type")
    if kind == "string":
        return "x" * schema.get("maxLength", 30)
    if kind == "array":
        return [_longest(schema["items"])] * schema.get("maxItems", 0)
    if kind == "object":
        return {k: _longest(v) for k, v in schema["properties"].items()}
    return -1.1234567890123456e-10 if kind == "number" else 1234567890123456


def test_bounded_schema_is_finite_pins_arguments_and_its_values_fit_the_bound() -> None:
    bounded = bounded_schema(ORDER, {"id": "A1", "other": 3}, Bounds())
    assert bounded["properties"]["id"] == {"const": "A1"}
    assert bounded["properties"]["items"]["maxItems"] == 3
    assert bounded["properties"]["note"]["maxLength"] == 10  # the spec's own bound is kept
    longest = _longest(bounded)
    text = json.dumps(longest)
    assert len(text) <= token_bound(bounded)
    assert Draft202012Validator(ORDER).is_valid(longest)  # a narrowing of the original
    assert schema_grammar(bounded)  # llama.cpp can build the grammar


def test_fields_a_later_step_reads_are_kept_past_the_optional_budget() -> None:
    from tooldojo.mcp.executors.response_schema import LADDER, bounded_schema

    properties = {f"note{k}": {"type": "string"} for k in range(8)}
    properties["divisionId"] = {"type": "integer"}  # optional, after the budget runs out
    schema = {"type": "object", "properties": properties}
    dropped = bounded_schema(schema, {}, LADDER[0])
    assert "divisionId" not in dropped["properties"]
    kept = bounded_schema(schema, {}, LADDER[0], keep=["divisionId"])
    assert kept["properties"]["divisionId"]["type"] == "integer"
    assert "divisionId" in kept["required"]
    # A field the schema does not declare (or a tool without one) still gets a short string.
    generic = bounded_schema(None, {"q": "x"}, LADDER[0], keep=["token"])
    assert generic["properties"]["token"]["type"] == "string" and "token" in generic["required"]


def test_generic_result_echoes_scalars_and_fits() -> None:
    schema = generic_result_schema({"city": "Lisbon", "days": 3, "deep": {"x": 1}}, Bounds())
    assert schema["properties"]["city"] == {"const": "Lisbon"}
    assert "deep" not in schema["properties"]
    # No free-text field a small model would fill to its bound: only short word values.
    assert set(schema["properties"]) == {"city", "days", "result"}
    strings = json.dumps(schema).count('"type": "string"')
    assert strings == 2 and '"maxLength": 24' in json.dumps(schema)
    assert not Draft202012Validator(schema).is_valid(
        {"city": "Lisbon", "days": 3, "result": "Sunny and warm with a light breeze all day"}
    )
    assert len(json.dumps(_longest(schema))) <= token_bound(schema)


def test_plan_tightens_until_it_fits_and_says_why_when_it_cannot() -> None:
    loose = plan_response(ORDER, {}, 4000)
    tight = plan_response(ORDER, {}, 260)
    assert tight.max_tokens <= 260 < loose.max_tokens
    with pytest.raises(UnboundedSchema, match="over the budget of 20"):
        plan_response(ORDER, {}, 20)


def test_a_large_schema_loses_fields_before_its_strings_get_shorter() -> None:
    # A string the 135M server fills up to a shorter bound is cut there and fails the call,
    # so when a schema does not fit, optional fields and items go first.
    wide = {
        "type": "object",
        "properties": {f"field{n}": {"type": "string"} for n in range(12)},
        "required": ["field0", "field1"],
    }
    roomy = plan_response(wide, {}, 4000)
    budget = roomy.max_tokens - 1
    fitted = plan_response(wide, {}, budget)
    assert fitted.max_tokens <= budget
    assert fitted.bounds.string_chars == roomy.bounds.string_chars == 48
    assert len(fitted.schema["properties"]) < len(roomy.schema["properties"])


def test_a_required_field_that_recurses_forever_cannot_be_bounded() -> None:
    forever = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/node"}},
                "required": ["next"],
            }
        },
    }
    with pytest.raises(UnboundedSchema):
        bounded_schema(forever, {}, Bounds())


def test_spec_patterns_and_formats_stay_valid_and_bounded() -> None:
    schema = {
        "type": "object",
        "properties": {
            "isbn": {"type": "string", "pattern": "^[0-9]{13}$"},
            "code": {"type": "string", "pattern": "^[A-Z]+$"},
            "mail": {"type": "string", "format": "email"},
        },
        "required": ["isbn", "code", "mail"],
    }
    bounded = bounded_schema(schema, {}, Bounds())
    assert bounded["properties"]["isbn"]["pattern"] == "^[0-9]{13}$"
    assert bounded["properties"]["code"]["pattern"] == "^[A-Z]{1,48}$"
    grammar = schema_grammar(bounded)
    assert "@" in grammar and token_bound(bounded) < 1000


def test_a_bounded_string_says_something_and_still_reaches_its_bound() -> None:
    """The server model filled free strings with ');' and ');;;;;;;;': a simulated value must
    hold a letter or digit (after one symbol at most), or be empty when it may be."""
    import re

    from llama_cpp.llama_grammar import LlamaGrammar

    from tooldojo.mcp.executors.response_schema import _safe_string

    for minimum in (0, 1):
        schema = _safe_string(48, minimum)
        pattern = re.compile(schema["pattern"])
        assert not any(pattern.match(junk) for junk in (");", ");;;;;;;;", ", ", "..."))
        assert all(pattern.match(ok) for ok in ("$5.00", "#tag", "(555) 123", "Lisbon", "7"))
        # a cut string is seen as cut: an unprefixed one still reaches the bound exactly
        assert pattern.match("x" * 48) and not pattern.match("x" * 49)
        assert bool(pattern.match("")) == (minimum == 0)
        # llama.cpp's converter takes it (the grammar the server decodes under)
        wrapped = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
        grammar = schema_grammar(wrapped)
        assert "[A-Za-z0-9]" in grammar
        LlamaGrammar.from_string(grammar, verbose=False)


def test_a_simulated_success_has_no_error_field_to_fill_and_its_flags_say_success() -> None:
    from tooldojo.mcp.executors.response_schema import success_shape

    # as in the scale3 run's tools (get_employees_by_id: employee, errors)
    schema = {
        "type": "object",
        "properties": {
            "errors": {"type": "array", "items": {"type": "string"}},
            "WebException": {"type": "object", "properties": {"code": {"type": "integer"}}},
            "employee": {"type": "string"},
            "errorCount": {"type": "integer"},  # counts errors: not a report, kept
            "success": {"type": "boolean"},
            "isFaulted": {"type": "boolean"},
        },
    }
    bounded = bounded_schema(schema, {}, Bounds(optional_properties=8))
    assert set(bounded["properties"]) == {"employee", "errorCount", "success", "isFaulted"}
    assert bounded["properties"]["success"] == {"const": True}
    assert bounded["properties"]["isFaulted"] == {"const": False}
    assert Draft202012Validator(schema).is_valid(_longest(bounded))  # still the tool's schema
    # the verifier fails exactly what is left out: an error field with content
    from tooldojo.mcp.executors.result_checks import _error_field

    assert _error_field("errors", ["timeout"]) and _error_field("success", False)
    assert not _error_field("errorCount", 3)

    # a required error field is the tool's contract: kept
    required = {**schema, "required": ["errors"]}
    assert "errors" in bounded_schema(required, {}, Bounds(optional_properties=8))["properties"]
    # an error body alone (a DELETE documented only by its error) gets the generic result...
    only_error = {"type": "object", "properties": {"error": {"type": "string"}}}
    assert success_shape(only_error) is None
    assert "result" in bounded_schema(only_error, {"id": "x"}, Bounds())["properties"]
    # ...unless nothing else is allowed, and a $ref at the top is read through
    closed = {**only_error, "additionalProperties": False}
    assert success_shape(closed) is closed
    ref = {"$ref": "#/$defs/out", "$defs": {"out": schema}}
    assert set(success_shape(ref)["properties"]) == set(bounded["properties"])


def test_enum_values_the_declared_type_rejects_are_left_out() -> None:
    # a spec of the scale run (get_channel_moderator): an array whose enum lists strings, so
    # every bounded answer with the field broke the tool's own schema
    schema = {
        "type": "object",
        "properties": {
            "bio": {"type": "string"},
            "content_filter": {"type": "array", "enum": ["drugs", "nudity"], "items": {}},
            "level": {"type": "integer", "enum": [1, "2", True, 3]},
        },
        "required": ["bio", "level"],
    }
    bounded = bounded_schema(schema, {}, Bounds())
    assert "content_filter" not in bounded["properties"]  # no value of it fits: dropped
    assert bounded["properties"]["level"] == {"enum": [1, 3]}
    assert Draft202012Validator(schema).is_valid(_longest(bounded))
    required = {**schema, "required": ["content_filter"]}
    with pytest.raises(UnboundedSchema):
        bounded_schema(required, {}, Bounds())


def test_a_field_a_later_step_reads_is_kept_in_every_record_of_a_list() -> None:
    # getOrgArticles of the scale run: a list of articles, whose slug the next step reads
    article = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string"} for i in range(8)}
        | {"slug": {"type": "string"}},
    }
    schema = {"type": "array", "items": {"$ref": "#/$defs/article"}, "$defs": {"article": article}}
    bounded = bounded_schema(schema, {}, Bounds(optional_properties=2), keep=["slug"])
    assert "slug" in bounded["items"]["required"] and bounded["minItems"] >= 1
    value = _longest(bounded)
    assert value and all("slug" in record for record in value)
    assert Draft202012Validator(schema).is_valid(value)
    # without the field to keep, the list may be empty and its records lack it
    plain = bounded_schema(schema, {}, Bounds(optional_properties=2))
    assert "slug" not in plain["items"]["properties"] and plain.get("minItems", 0) == 0


def test_optional_free_text_is_left_out_and_required_or_read_text_stays() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "description": {"type": "string"},
            "return_message": {"type": "string"},
            "summary": {"type": "string", "enum": ["ok", "partial"]},  # a choice, not prose
            "note": {"type": "string", "maxLength": 20},  # short by its own schema
            "body": {"type": "string"},
            "total": {"type": "integer"},
        },
        "required": ["id", "body"],
    }
    bounded = bounded_schema(schema, {}, Bounds(), keep=["return_message"])
    assert set(bounded["properties"]) == {
        "id",
        "body",
        "summary",
        "note",
        "total",
        "return_message",
    }
    assert "description" not in bounded["properties"]  # the field the server cut most
    assert Draft202012Validator(schema).is_valid(_longest(bounded))
