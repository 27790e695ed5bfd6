"""The depth check of every constrained request's grammar is scanned once per grammar text
(a tool set's grammar recurs turn after turn; the scan took milliseconds in Python)."""

from __future__ import annotations

from tooldojo.llm.llamacpp_engine import (
    MAX_GRAMMAR_CHARS,
    MAX_GRAMMAR_DEPTH,
    _nests_too_deep,
    grammar_too_deep,
)

SHALLOW = "root ::= " + '("a" ' * 50 + ")?" * 50
DEEP = "root ::= " + '("a" ' * (MAX_GRAMMAR_DEPTH + 1) + ")?" * (MAX_GRAMMAR_DEPTH + 1)


def test_the_verdict_is_scanned_once_per_grammar_text_and_stays_the_same():
    _nests_too_deep.cache_clear()
    for _ in range(3):
        assert not grammar_too_deep(SHALLOW)
        assert not grammar_too_deep("".join(list(SHALLOW)))  # equal text, another object
        assert grammar_too_deep(DEEP)
    info = _nests_too_deep.cache_info()
    assert (info.misses, info.hits, info.currsize) == (2, 7, 2)


def test_an_over_long_grammar_is_refused_without_being_scanned_or_kept():
    _nests_too_deep.cache_clear()
    assert grammar_too_deep('"x"' * (MAX_GRAMMAR_CHARS // 3 + 1))
    assert _nests_too_deep.cache_info().currsize == 0
