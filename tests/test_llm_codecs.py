"""Tool-call codecs: round trips for arbitrary arguments, leniency about prose, strict errors."""

from __future__ import annotations

import json
import keyword
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tooldojo.errors import ToolDojoError
from tooldojo.llm.codecs import (
    CODEC_NAMES,
    DEFAULT_CODEC,
    ParseError,
    compact_signature,
    get_codec,
    trim_description,
)
from tooldojo.model import Tool, ToolCall
from tooldojo.specs import load_tools

SPECS = Path(__file__).resolve().parent.parent / "examples" / "specs"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name) and name not in {"true", "false", "null"}
)
tool_names = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)


def calls_strategy(names: st.SearchStrategy[str], keys: st.SearchStrategy[str]):
    call = st.builds(
        lambda name, arguments: ToolCall(name=name, arguments=arguments),
        names,
        st.dictionaries(keys, json_values, max_size=5),
    )
    return st.lists(call, max_size=4)


def _plain(calls: list[ToolCall]) -> list[tuple[str, str]]:
    # Compare through JSON so 1 == 1.0 or -0.0 == 0.0 cannot hide a type change.
    return [(call.name, json.dumps(call.arguments, sort_keys=True)) for call in calls]


ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("codec_name", ["hermes", "json", "openai"])
@ROUND_TRIP
@given(calls=calls_strategy(tool_names, st.text(max_size=12)))
def test_json_based_codecs_round_trip_any_arguments(codec_name: str, calls: list[ToolCall]):
    codec = get_codec(codec_name)
    assert _plain(codec.parse(codec.format_calls(calls))) == _plain(calls)


@ROUND_TRIP
@given(
    calls=calls_strategy(st.lists(identifiers, min_size=1, max_size=3).map(".".join), identifiers)
)
def test_pythonic_round_trips_any_arguments(calls: list[ToolCall]):
    codec = get_codec("pythonic")
    assert _plain(codec.parse(codec.format_calls(calls))) == _plain(calls)


@ROUND_TRIP
@given(
    calls=calls_strategy(tool_names, st.text(max_size=12)),
    prose=st.sampled_from(["", "Sure, let me check.\n", "I'll call the tool now: "]),
)
def test_hermes_tolerates_prose_before_calls(calls: list[ToolCall], prose: str):
    codec = get_codec("hermes")
    assert _plain(codec.parse(prose + codec.format_calls(calls))) == _plain(calls)


def test_openai_round_trip_keeps_ids():
    codec = get_codec("openai")
    calls = [ToolCall(id="call_1", name="f", arguments={"a": 1})]
    parsed = codec.parse(codec.format_calls(calls))
    assert [c.id for c in parsed] == ["call_1"]


def test_default_codec_and_names():
    assert DEFAULT_CODEC == "hermes"
    assert set(CODEC_NAMES) == {"openai", "hermes", "pythonic", "json"}
    with pytest.raises(ToolDojoError, match="unknown tool-call codec 'nope'"):
        get_codec("nope")
    assert issubclass(ParseError, ToolDojoError)


@pytest.mark.parametrize("codec_name", ["openai", "hermes", "pythonic", "json"])
def test_render_lists_every_tool_with_its_schema(codec_name: str):
    tools = [
        Tool(
            name="get_current_weather",
            description="Weather now",
            parameters={
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["location"],
            },
        ),
        Tool(name="list_accounts", description="Bank accounts"),
    ]
    text = get_codec(codec_name).render(tools)
    for tool in tools:
        if codec_name == "hermes":  # compact signatures (prompt length is the training budget)
            line = compact_signature(tool)
        else:
            line = json.dumps(tool.to_openai(), ensure_ascii=False, separators=(",", ":"))
        assert line in text


def test_compact_signature_keeps_everything_that_specifies_a_call():
    tool = Tool(
        name="list_books",
        description="Search books in the catalog. Returns 422 when the filters conflict.",
        parameters={
            "type": "object",
            "properties": {
                "q": {"type": "string", "description": "Free text, e.g. Dune. Case-insensitive."},
                "genre": {"enum": ["fiction", "poetry"], "default": "fiction"},
                "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "price": {"type": "number", "exclusiveMinimum": 0},
                "day": {"type": "string", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                    "required": ["city"],
                },
            },
            "required": ["q"],
        },
    )
    text = compact_signature(tool)
    assert text.splitlines()[0] == (
        'list_books(q: string, genre?: "fiction"|"poetry" = "fiction", '
        "page_size?: integer[1..100] = 20, price?: number[>0], day?: string(date), "
        "tags?: string[], where?: {city: string, zip?: string|null}) - Search books in the catalog."
    )
    assert "  q: Free text, e.g. Dune." in text.splitlines()  # first sentence, not cut at "e.g."
    assert "422" not in text  # the second sentence of the description is trimmed away


def test_compact_rendering_is_shorter_than_json_schemas():
    tools = load_tools(sorted(str(path) for path in SPECS.iterdir() if path.is_file()))
    compact = get_codec("hermes").render(tools)
    schemas = "\n".join(json.dumps(tool.to_openai(), separators=(",", ":")) for tool in tools)
    assert len(compact) < 0.6 * len(schemas)
    for tool in tools:
        assert f"{tool.name}(" in compact


def test_trim_description_cuts_long_text_at_a_word():
    assert trim_description("One. Two.") == "One."
    long = "word " * 40
    trimmed = trim_description(long, limit=30)
    assert len(trimmed) <= 30 and trimmed.endswith("…") and "wor…" not in trimmed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[math.factorial(n=5)]", [("math.factorial", {"n": 5})]),
        ("math.factorial(n=5)", [("math.factorial", {"n": 5})]),
        (
            '[f(a=-1, b=-2.5, c="x", d=True, e=None, g=[1, (2, 3)], h={"k": [False]})]',
            [
                (
                    "f",
                    {
                        "a": -1,
                        "b": -2.5,
                        "c": "x",
                        "d": True,
                        "e": None,
                        "g": [1, [2, 3]],
                        "h": {"k": [False]},
                    },
                )
            ],
        ),
        ("[f(a=true, b=null)]", [("f", {"a": True, "b": None})]),
        ("Here you go:\n```python\n[f(a=1), g(b='x')]\n```", [("f", {"a": 1}), ("g", {"b": "x"})]),
        (
            "Sure! [get_weather(city='Paris')] is what I'd call.",
            [("get_weather", {"city": "Paris"})],
        ),
        ("The answer is 42.", []),
        ("Paris", []),
        ("[1, 2, 3]", []),
        ("[]", []),
    ],
)
def test_pythonic_parses_literals_and_ignores_prose(text: str, expected: list):
    calls = get_codec("pythonic").parse(text)
    assert [(c.name, c.arguments) for c in calls] == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("[f(1)]", "positional arguments"),
        ("[f(a=x)]", "is not a literal"),
        ("[f(a=1+2)]", "is not a literal"),
        ("[f(**kw)]", "kwargs"),
        ("[f(a=1), 3]", "every item of the list must be a call"),
        ("[f(a=__import__('os').system('true'))]", "is not a literal"),
        ("Calling [f(a=1, b=] now", "malformed Python call list"),
        ("[f(a={1: 2})]", "dict keys must be strings"),
        ("[f(a=-'x')]", "numbers only"),
    ],
)
def test_pythonic_rejects_malformed_calls(text: str, message: str):
    with pytest.raises(ParseError, match=message):
        get_codec("pythonic").parse(text)


def test_pythonic_cannot_write_unpythonic_names():
    with pytest.raises(ToolDojoError, match="cannot be written"):
        get_codec("pythonic").format_calls([ToolCall(name="get-weather")])


@pytest.mark.parametrize(
    "text, expected",
    [
        ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>', [("f", {"a": 1})]),
        ('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>', [("f", {"a": 1})]),
        ('<tool_call>\n{"name": "f", "arguments": {}}', [("f", {})]),
        (
            '<tool_call>\n```json\n{"name": "f", "arguments": {"a": 1}}\n```\n</tool_call>',
            [("f", {"a": 1})],
        ),
        (
            '<tool_call>{"name": "f", "arguments": {"a": "</tool_call>"}}</tool_call>',
            [("f", {"a": "</tool_call>"})],
        ),
        ("It is sunny in Paris.", []),
    ],
)
def test_hermes_parses_leniently(text: str, expected: list):
    assert [(c.name, c.arguments) for c in get_codec("hermes").parse(text)] == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ('<tool_call>{"name": "f", "arguments": {"a": 1}</tool_call>', "invalid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', "no string 'name'"),
        ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>', "not valid JSON"),
        ('<tool_call>{"name": "f"} trailing</tool_call>', "expected </tool_call>"),
    ],
)
def test_hermes_rejects_malformed_calls(text: str, message: str):
    with pytest.raises(ParseError, match=message):
        get_codec("hermes").parse(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[{"name": "f", "arguments": {"a": 1}}]', [("f", {"a": 1})]),
        ('{"name": "f", "arguments": {"a": 1}}', [("f", {"a": 1})]),
        ('See [1]. Then ```json\n[{"name": "f", "parameters": {}}]\n```', [("f", {})]),
        ('{"tool_calls": [{"name": "f", "arguments": {}}]}', [("f", {})]),
        ('{"answer": "sunny"}', []),
        ("No call needed.", []),
    ],
)
def test_json_codec_parses_leniently(text: str, expected: list):
    assert [(c.name, c.arguments) for c in get_codec("json").parse(text)] == expected


def test_json_codec_rejects_broken_calls():
    with pytest.raises(ParseError, match="not valid JSON"):
        get_codec("json").parse('[{"name": "f", "arguments": {"a": }]')
    with pytest.raises(ParseError, match="must be a JSON object"):
        get_codec("json").parse('[{"name": "f", "arguments": 3}]')


def test_openai_codec_parses_api_shapes_and_rejects_broken_ones():
    codec = get_codec("openai")
    text = (
        '{"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", '
        '"arguments": "{\\"x\\": [1]}"}}]}'
    )
    assert [(c.id, c.name, c.arguments) for c in codec.parse(text)] == [("c1", "f", {"x": [1]})]
    assert codec.parse("plain answer") == []
    with pytest.raises(ParseError, match="not valid JSON"):
        codec.parse('[{"function": {"name": "f", "arguments": "{bad"}}]')
    with pytest.raises(ParseError, match="'function' object"):
        codec.parse('[{"function": {"name": "f"}}, {"function": 3}]')
