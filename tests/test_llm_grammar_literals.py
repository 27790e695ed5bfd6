"""Literals in llama.cpp grammars: enum values holding quotes or backslashes (Telnyx's
``"\\"Latency\\""``, Vercel's ``mport("/vercel/...")``) made grammars llama.cpp rejected, so every
constrained request offering such a tool failed. Grammars are parsed and run by llama.cpp's own
grammar sampler over a vocabulary-only load of the embedded GGUF (no weights, well under 1 s)."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from typing import Any

import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from tooldojo.llm.embedded import embedded_gguf_path  # noqa: E402
from tooldojo.llm.llamacpp import schema_grammar  # noqa: E402

TRICKY = 'say "hi" \\ then C:\\tmp'
MULTILINE = "first line\nsecond"
NON_ASCII = "São Paulo"


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(embedded_gguf_path()).encode(), params)
    assert model, "could not load the embedded GGUF's vocabulary"
    try:
        yield llama_cpp.llama_model_get_vocab(model)
    finally:
        llama_cpp.llama_model_free(model)


def _admits(vocab: Any, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets ``text`` through, token by token, and then
    allows the end of generation (the grammar is complete)."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    assert sampler, f"llama.cpp rejected the grammar:\n{grammar}"
    try:
        raw = text.encode("utf-8")
        tokens = (llama_cpp.llama_token * (len(raw) + 8))()
        count = llama_cpp.llama_tokenize(vocab, raw, len(raw), tokens, len(tokens), False, False)
        assert count > 0
        for token in [*tokens[:count], llama_cpp.llama_vocab_eos(vocab)]:
            candidate = llama_cpp.llama_token_data(token, 0.0, 0.0)
            array = llama_cpp.llama_token_data_array(ctypes.pointer(candidate), 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
            if candidate.logit == float("-inf"):
                return False
            if token != llama_cpp.llama_vocab_eos(vocab):
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_enum_values_with_quotes_and_backslashes_make_a_grammar_that_admits_exactly_them(vocab):
    grammar = schema_grammar({"enum": [TRICKY, "plain"]})
    assert _admits(vocab, grammar, json.dumps(TRICKY))
    assert _admits(vocab, grammar, '"plain"')
    assert not _admits(vocab, grammar, '"say \\"hi\\" \\\\ then C:\\\\tmpx"')
    assert not _admits(vocab, grammar, '"say "')  # the old grammar's literal ended here
    assert not _admits(vocab, grammar, '"say \\"hi\\" \\ then C:\\tmp"')  # not valid JSON


def test_a_line_break_in_a_constant_is_admitted_only_as_its_json_escape(vocab):
    grammar = schema_grammar(
        {"type": "object", "properties": {"note": {"const": MULTILINE}}, "required": ["note"]}
    )
    assert _admits(vocab, grammar, json.dumps({"note": MULTILINE}))
    assert not _admits(vocab, grammar, '{"note": "first line\nsecond"}')  # a raw line break


def test_non_ascii_enum_values_stay_raw_characters(vocab):
    grammar = schema_grammar({"enum": [NON_ASCII]})
    assert _admits(vocab, grammar, json.dumps(NON_ASCII, ensure_ascii=False))


def test_a_quoted_property_name_makes_an_accepted_grammar(vocab):
    name = 'a"b\\c'
    schema = {"type": "object", "properties": {name: {"type": "integer"}}, "required": [name]}
    assert _admits(vocab, schema_grammar(schema), json.dumps({name: 7}))
