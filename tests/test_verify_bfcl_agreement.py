"""Acceptance: the label gate agrees with BFCL's official ast_checker on every corpus case.

The corpus comes from bfcl-eval's data (test use only): each ground truth as a correct
output plus at least five perturbations per entry.
"""

from __future__ import annotations

from collections import Counter

from tooldojo._bfcl import ast_check
from tooldojo.verify._bfcl_corpus import CATEGORIES, build_corpus
from tooldojo.verify._match import match_calls, shape_of


def test_label_gate_agrees_with_official_checker_on_bfcl_corpus() -> None:
    cases = build_corpus()
    per_entry = Counter(case.entry_id for case in cases)
    assert min(per_entry.values()) >= 6  # correct + at least five perturbations
    assert {case.category for case in cases} == set(CATEGORIES)
    disagreements = []
    verdicts: Counter[bool] = Counter()
    for case in cases:
        official = ast_check(case.functions, case.output, case.answer, "Python", case.category)
        shapes = {tool.name: shape_of(tool) for tool in case.tools}
        ours = match_calls(case.calls(), case.label, shapes) is None
        verdicts[official["valid"]] += 1
        if ours != official["valid"]:
            disagreements.append((case.entry_id, case.variant, official, ours))
    print(
        f"\nBFCL agreement: {len(cases) - len(disagreements)}/{len(cases)} cases from "
        f"{len(per_entry)} entries ({verdicts[True]} valid, {verdicts[False]} invalid)"
    )
    assert not disagreements, disagreements[:5]
    # The corpus must exercise both outcomes substantially, or agreement means little.
    assert verdicts[True] > 3000 and verdicts[False] > 10000
