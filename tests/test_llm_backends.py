"""Backend plumbing without a model: config and spec strings, prompt rendering, the tool-call
constraint schema and grammar, and how raw answers map to completions (typed failures)."""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.llm._shared import (
    call_schema,
    completion_from_document,
    completion_from_text,
    render_chat,
    tool_calls_document_schema,
)
from tooldojo.llm.codecs import get_codec
from tooldojo.llm.config import BackendConfig, load_config, load_model, parse_spec
from tooldojo.llm.embedded import check_gguf, embedded_gguf_path
from tooldojo.model import Message, Tool, ToolCall

WEATHER = Tool(
    name="get_weather",
    description="Weather now",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
    },
)
TREE = Tool(
    name="add_node",
    parameters={
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "required": ["node"],
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["label"],
            }
        },
    },
)
BASE = {"model": "m", "finish_reason": "stop", "latency_s": 0.0}


def test_spec_strings():
    assert parse_spec("llamacpp") == BackendConfig(kind="llamacpp")
    assert parse_spec("embedded").kind == "llamacpp"
    assert parse_spec("llamacpp:/m/x.gguf").model == "/m/x.gguf"
    spec = parse_spec("openai:Qwen/Qwen3-8B@http://a:8000/v1,http://b:8000/v1")
    assert spec.model == "Qwen/Qwen3-8B"
    assert spec.base_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert parse_spec("transformers:/ckpt").model == "/ckpt"
    for bad, message in [
        ("vllm:x", "unknown backend 'vllm'"),
        ("openai:gpt", "openai:MODEL@URL"),
        ("transformers", "needs 'model'"),
    ]:
        with pytest.raises(ToolDojoError, match=message):
            parse_spec(bad)


def test_bad_model_paths_fail_at_start_up(tmp_path):
    with pytest.raises(ToolDojoError, match="model file not found"):
        load_model(f"llamacpp:{tmp_path}/missing.gguf")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 16)
    with pytest.raises(ToolDojoError, match="not a GGUF model file"):
        load_model(f"llamacpp:{fake}")
    with pytest.raises(ToolDojoError, match="checkpoint folder not found"):
        load_model(f"transformers:{tmp_path}/nothing")
    with pytest.raises(ToolDojoError, match=r"no config\.json"):
        load_model(f"transformers:{tmp_path}")
    assert check_gguf(embedded_gguf_path()).name.endswith(".gguf")


def test_roles_config_file(tmp_path):
    path = tmp_path / "tooldojo.yaml"
    path.write_text(
        "backends:\n"
        "  local: llamacpp\n"
        "  remote: {kind: openai, model: m, base_urls: ['http://127.0.0.1:9/v1']}\n"
        "roles:\n"
        "  assistant: local\n"
        "  user: {backend: remote, sampling: {temperature: 0.8}}\n"
        "  judge: openai:j@http://127.0.0.1:9/v1\n"
    )
    config = load_config(path)
    assert config.backend(config.role("assistant").backend).kind == "llamacpp"
    assert config.role("user").sampling.temperature == 0.8
    assert config.backend(config.role("judge").backend).model == "j"
    assert config.backend(config.role("server").backend).kind == "llamacpp"  # default
    path.write_text("roles:\n  judge: nonsense:x\n")
    with pytest.raises(ToolDojoError, match=r"at roles.judge: .*unknown backend 'nonsense'"):
        load_config(path)
    path.write_text("backends:\n  b: {kind: openai, model: m}\n")
    with pytest.raises(ToolDojoError, match="needs 'model' and at least one of 'base_urls'"):
        load_config(path)
    path.write_text("roles: [1,\n")
    with pytest.raises(ToolDojoError, match="invalid YAML"):
        load_config(path)
    with pytest.raises(ToolDojoError, match="config file not found"):
        load_config(tmp_path / "other.yaml")


def test_roles_play_without_flash_attention_and_with_auto_weights_unless_set(tmp_path, monkeypatch):
    from tooldojo.llm import config as config_module
    from tooldojo.llm.config import load_role_models, role_backend

    plain = role_backend(BackendConfig(kind="llamacpp"))
    assert plain.flash_attn is False and plain.weights == "auto"
    assert role_backend(plain) == plain  # applying it twice changes nothing
    kept = role_backend(BackendConfig(kind="llamacpp", flash_attn=True, weights="f16"))
    assert kept.flash_attn and kept.weights == "f16"  # set in the config: kept
    eight_bit = role_backend(BackendConfig(kind="llamacpp", kv_cache="q8_0"))
    assert eight_bit.flash_attn  # an 8-bit KV cache needs it
    remote = BackendConfig(kind="openai", model="m", base_urls=["http://h:1/v1"])
    assert role_backend(remote) == remote
    # Greedy paths keep the engine's defaults: evaluations build BackendConfig directly.
    default = BackendConfig(kind="llamacpp")
    assert default.flash_attn and default.weights == "f16"

    loaded: list[BackendConfig] = []
    monkeypatch.setattr(config_module, "load_model", lambda c: loaded.append(c) or object())
    path = tmp_path / "tooldojo.yaml"
    path.write_text(
        "backends:\n  local: {kind: llamacpp, n_ctx: 1024}\n"
        "  fast: {kind: llamacpp, n_ctx: 2048, flash_attn: true}\n"
        "roles:\n  user: local\n  assistant: local\n  server: fast\n"
    )
    models = load_role_models(load_config(path))
    assert models["user"] is models["assistant"]  # one instance per backend, as before
    by_ctx = {config.n_ctx: config for config in loaded}
    assert by_ctx[1024].flash_attn is False and by_ctx[1024].weights == "auto"
    assert by_ctx[2048].flash_attn is True and by_ctx[2048].weights == "auto"
    assert by_ctx[8192].flash_attn is False  # the judge, on the default backend


def test_importing_tooldojo_stays_light():
    import subprocess

    code = (
        "import sys, tooldojo, tooldojo.llm, tooldojo.llm.config;"
        "heavy = ('llama_cpp', 'torch', 'transformers', 'openai');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_render_chat_puts_tools_in_system_and_replays_history():
    codec = get_codec("hermes")
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather in Paris and Rome?"),
        Message(
            role="assistant",
            tool_calls=[
                ToolCall(id="1", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id="2", name="get_weather", arguments={"city": "Rome"}),
            ],
        ),
        Message(role="tool", tool_call_id="1", content="sunny"),
        Message(role="tool", tool_call_id="2", content="rain"),
    ]
    chat = render_chat(messages, [WEATHER], codec)
    assert [turn["role"] for turn in chat] == ["system", "user", "assistant", "user"]
    assert chat[0]["content"].startswith("Be brief.\n\n# Tools")
    assert "get_weather(" in chat[0]["content"]
    assert codec.parse(chat[2]["content"])[1].arguments == {"city": "Rome"}
    assert chat[3]["content"] == (
        "<tool_response>\nsunny\n</tool_response>\n<tool_response>\nrain\n</tool_response>"
    )
    no_system = render_chat([Message(role="user", content="hi")], [WEATHER], codec)
    assert no_system[0]["role"] == "system" and "<tools>" in no_system[0]["content"]
    assert render_chat([Message(role="user", content="hi")], None, codec) == [
        {"role": "user", "content": "hi"}
    ]


def test_constraint_schema_is_built_from_the_tools():
    document = tool_calls_document_schema([WEATHER, TREE], max_calls=2)
    validator = jsonschema.Draft202012Validator(document)
    good = {
        "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}},
            {
                "name": "add_node",
                "arguments": {"node": {"label": "a", "children": [{"label": "b"}]}},
            },
        ]
    }
    assert validator.is_valid(good)
    assert validator.is_valid({"answer": "It is sunny."})
    for bad in [
        {"tool_calls": [{"name": "get_weather", "arguments": {"unit": "c"}}]},  # missing city
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "x", "unit": "k"}}]},
        {"tool_calls": [{"name": "nope", "arguments": {}}]},
        {"tool_calls": [{"name": "add_node", "arguments": {"node": {"children": []}}}]},
        {"tool_calls": good["tool_calls"] * 2},  # more than max_calls
        {"tool_calls": []},
    ]:
        assert not validator.is_valid(bad), bad
    forced = jsonschema.Draft202012Validator(
        tool_calls_document_schema([WEATHER], allow_text=False)
    )
    assert not forced.is_valid({"answer": "x"})
    single = call_schema([TREE])
    assert single["properties"]["arguments"]["properties"]["node"] == {"$ref": "#/$defs/t0-Node"}


def test_answers_map_to_completions_or_typed_failures():
    hermes = get_codec("hermes")
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    ok = completion_from_text("Let me look.\n" + call, [WEATHER], hermes, base=BASE)
    assert ok.ok and ok.finish_reason == "tool_calls" and ok.text == "Let me look."
    assert ok.tool_calls[0].id.startswith("call_") and ok.tool_calls[0].arguments == {
        "city": "Oslo"
    }
    text = completion_from_text("It is sunny.", [WEATHER], hermes, base=BASE)
    assert text.ok and text.text == "It is sunny." and text.tool_calls == []
    broken = completion_from_text("<tool_call>{oops", [WEATHER], hermes, base=BASE)
    assert not broken.ok and broken.finish_reason == "error" and "invalid JSON" in broken.error
    assert broken.text == "<tool_call>{oops"
    unknown = completion_from_text(
        call.replace("get_weather", "rm_rf"), [WEATHER], hermes, base=BASE
    )
    assert not unknown.ok and "unknown tool 'rm_rf'" in unknown.error and unknown.tool_calls == []
    cut = completion_from_text(
        "<tool_call>{", [WEATHER], hermes, base={**BASE, "finish_reason": "length"}
    )
    assert "cut off at max_tokens" in cut.error
    doc = completion_from_document(
        json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}),
        [WEATHER],
        base=BASE,
    )
    assert doc.ok and doc.tool_calls[0].name == "get_weather"
    assert completion_from_document('{"answer": "hi"}', [WEATHER], base=BASE).text == "hi"
    assert not completion_from_document('{"answer": ', [WEATHER], base=BASE).ok
    assert not completion_from_document('{"other": 1}', [WEATHER], base=BASE).ok


def test_hermes_grammar_wraps_the_call_schema():
    pytest.importorskip("llama_cpp")
    from tooldojo.llm.llamacpp import grammar_friendly, hermes_grammar

    schema = json.dumps(call_schema([WEATHER]))
    free = hermes_grammar(schema, True, None)
    assert free.startswith("root ::= calls | text\n") and "tool-call-json ::=" in free
    assert "\nroot ::=" not in free.split("\n", 1)[1]  # llama.cpp's own root was renamed
    one = hermes_grammar(schema, False, 1)
    assert one.startswith('root ::= calls\ncalls ::= "<tool_call>\\n" tool-call-json')
    assert "{0," not in one and "{0,2}" in hermes_grammar(schema, False, 3)
    relaxed = grammar_friendly(
        {"type": "string", "pattern": r"^(a|\d)$", "maxLength": 500, "enum": [{"pattern": 1}]}
    )
    assert relaxed == {"type": "string", "enum": [{"pattern": 1}]}
    assert grammar_friendly({"type": "integer", "minimum": 1, "maximum": 3}) == {"enum": [1, 2, 3]}
    assert grammar_friendly({"description": "anything"}) == {
        "anyOf": [{"type": t} for t in ("string", "number", "boolean", "object", "array", "null")]
    }


def test_llama_cpp_rejects_a_bad_grammar_without_crashing():
    pytest.importorskip("llama_cpp")
    from tooldojo.llm.llamacpp import LlamaCppChatModel

    model = LlamaCppChatModel(max_batch=1)
    assert model.grammar_accepted('root ::= "a"')
    assert not model.grammar_accepted("root ::= undefined_rule_name")


def test_patterns_are_rewritten_for_the_grammar_converter():
    pytest.importorskip("llama_cpp")
    from tooldojo.llm.llamacpp import LlamaCppChatModel, _plain_pattern

    assert _plain_pattern(r"^\d{4}-\d{2}$") == "^[0-9]{4}-[0-9]{2}$"
    assert _plain_pattern(r"^[\d.]+$") == "^[0-9.]+$"
    assert _plain_pattern(r"^\w+\.com$") == r"^[A-Za-z0-9_]+[\x2E]com$"
    assert _plain_pattern(r"^[\w\._]+$") == r"^[A-Za-z0-9_\x2E_]+$"
    assert _plain_pattern(r"^(a|b)$") is None and _plain_pattern("no-anchors") is None
    from tooldojo.llm.llamacpp import schema_grammar

    model = LlamaCppChatModel(max_batch=1)
    # Escaped literals inside a class ("\." "\-" "\(" "\]"): GBNF has no such escapes, and
    # llama.cpp rejected the whole grammar (an AWS-style "^[\w\._]+$" failed every call).
    for pattern in [
        r"^\d{4}-\d{2}$",
        r"^\w+\.com$",
        r"^cus_[0-9]+$",
        r"^[\w\._]+$",
        r"^[a-z\-\(\)]+$",
        r"^[\]\\\^]+$",
        r"^a\-b\^$",
    ]:
        grammar = schema_grammar({"type": "string", "pattern": pattern})
        assert model.grammar_accepted(grammar), pattern


def test_warm_streams_add_idle_kv_streams_and_are_validated():
    from pydantic import ValidationError

    from tooldojo.llm.llamacpp import _streams

    assert _streams(8) == 10  # the default: two warm streams beside the busy ones
    assert _streams(8, 10) == 18
    assert _streams(1, 10) == 1  # one request at a time: one stream, reused in place
    assert BackendConfig(kind="llamacpp", warm_streams=6).warm_streams == 6
    with pytest.raises(ValidationError):
        BackendConfig(kind="llamacpp", warm_streams=-1)
