"""Grammars too deep for llama.cpp's recursive parser are refused, not parsed (parsing one
overflowed the engine thread's stack and killed a synthesis run with a segmentation fault)."""

from __future__ import annotations

import json

import pytest

from tooldojo.llm.llamacpp import _plain_pattern, call_schema, hermes_grammar
from tooldojo.llm.llamacpp_engine import MAX_GRAMMAR_DEPTH, grammar_too_deep
from tooldojo.model import Tool

DEEP = "root ::= " + '("a" ' * (MAX_GRAMMAR_DEPTH + 1) + ")?" * (MAX_GRAMMAR_DEPTH + 1)

# The refined corpus's tool whose grammar was nested 262,144 deep.
DISPLAY = Tool(
    name="create_display",
    parameters={
        "type": "object",
        "properties": {"html": {"type": "string", "pattern": "^.{0,262144}$"}},
        "required": ["html"],
    },
)


def test_depth_counts_groups_but_not_parentheses_in_literals_or_classes():
    assert grammar_too_deep(DEEP)
    shallow = "root ::= " + '("a" ' * 50 + ")?" * 50
    assert not grammar_too_deep(shallow)
    assert not grammar_too_deep('root ::= "((((((" [()] ("x")' + ' "\\"((("' * 600)
    assert grammar_too_deep("root ::= " + '"x"' * 700_000)  # 2.1 M characters: refused


def test_a_huge_repetition_in_a_pattern_is_left_to_the_check_after_decoding():
    assert _plain_pattern("^.{0,262144}$") is None
    assert _plain_pattern("^[a-z]{2,2}$") == "^[a-z]{2,2}$"  # small bounds stay
    grammar = hermes_grammar(json.dumps(call_schema([DISPLAY])), True, None)
    assert not grammar_too_deep(grammar) and len(grammar) < 10_000


@pytest.mark.slow
def test_the_engine_refuses_a_too_deep_grammar_and_keeps_serving():
    import anyio

    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.llm.llamacpp_engine import GenerationParams, generate

    model = LlamaCppChatModel(pool_size=1, n_threads=1, max_batch=2, n_ctx=1024)
    try:
        assert not model.grammar_accepted(DEEP)
        engine = model._engines[0]
        tokens = model.tokenize("Say yes.")

        async def both():
            refused = await generate(engine, tokens, GenerationParams(max_tokens=4, grammar=DEEP))
            served = await generate(engine, tokens, GenerationParams(max_tokens=4))
            return refused, served

        refused, served = anyio.run(both)
        assert refused.finish_reason == "error" and refused.error == "grammar_rejected"
        assert served.finish_reason in {"stop", "length"} and served.completion_tokens > 0
        assert model.stats.grammar_rejected == 1
    finally:
        model.close()
