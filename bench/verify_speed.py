"""Label gate vs BFCL's official ast_checker: checks per second on the BFCL agreement corpus.

Both run in this process on the same cases (BFCL data, test use only). Our gate compiles each
tool's shape once (as the verify stage and the reward do); the official checker re-derives
everything per check, which is its design. Prints per-category figures and the ratio.

    OMP_NUM_THREADS=1 .venv/bin/python bench/verify_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from tooldojo._bfcl import MODEL_UNDERSCORE_TO_DOT, bfcl_language, checker_module
from tooldojo.verify._bfcl_corpus import CATEGORIES, build_corpus
from tooldojo.verify._match import match_calls, shape_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many passes.")
    args = parser.parse_args()

    cases = build_corpus()
    official = checker_module().ast_checker
    python = bfcl_language("Python")
    by_category: dict[str, list] = defaultdict(list)
    for case in cases:
        shapes = {tool.name: shape_of(tool) for tool in case.tools}
        by_category[case.category].append((case, case.calls(), shapes))

    def time_official(items: list) -> float:
        start = time.perf_counter()
        for case, _, _ in items:
            official(
                case.functions,
                case.output,
                case.answer,
                python,
                case.category,
                MODEL_UNDERSCORE_TO_DOT,
            )
        return time.perf_counter() - start

    def time_ours(items: list) -> float:
        start = time.perf_counter()
        for case, calls, shapes in items:
            match_calls(calls, case.label, shapes)
        return time.perf_counter() - start

    print(f"{'category':<24}{'cases':>7}{'official/s':>13}{'ours/s':>13}{'ratio':>8}")
    total_official = total_ours = 0.0
    for category in CATEGORIES:
        items = by_category[category]
        t_official = min(time_official(items) for _ in range(args.repeat))
        t_ours = min(time_ours(items) for _ in range(args.repeat))
        total_official += t_official
        total_ours += t_ours
        print(
            f"{category:<24}{len(items):>7}{len(items) / t_official:>13,.0f}"
            f"{len(items) / t_ours:>13,.0f}{t_official / t_ours:>7.2f}x"
        )
    n = len(cases)
    print(
        f"{'all':<24}{n:>7}{n / total_official:>13,.0f}{n / total_ours:>13,.0f}"
        f"{total_official / total_ours:>7.2f}x"
    )


if __name__ == "__main__":
    main()
