"""Where the time of ``tooldojo eval bfcl`` goes: entries/min and the engine's counters.

Runs the BFCL harness in this process on a deterministic sample (``--limit`` per category) with
the model ``eval bfcl`` would build for ``--model`` (the embedded model, a GGUF, a tooldojo
checkpoint), then prints per entry: prompt tokens (and how many were computed rather than
reused), generated tokens, answers cut by ``max_tokens``; per llama.cpp step: tokens, generating
sequences and passes (1.00 is the best possible); and the CPU seconds of this process, which the
load of other jobs does not move. BFCL is test data: nothing here is tuned on its scores.

    python bench/bfcl_throughput.py --model PATH.gguf --categories simple_python --limit 24

The acceptance of issue 14 asks for the 1,240 non-live entries in at most 30 minutes (41.3 per
minute); the script prints that projection from the measured rate.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, run_bfcl
from tooldojo.eval.models import resolve_model
from tooldojo.llm.base import run_then_close

NON_LIVE = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"]
TARGET_PER_MIN = 1240 / 30


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(options: argparse.Namespace, entries: list, draft_tokens: int | None) -> dict:
    """One pass over ``entries`` with a fresh model; the figures and raw answers."""
    settings = BFCLSettings(
        categories=options.categories,
        limit=options.limit,
        concurrency=options.concurrency,
        max_tokens=options.max_tokens,
    )
    evaluated = resolve_model(options.model, options.mode)
    if options.weights is not None:  # the same model and mode, other weights
        from tooldojo.eval.models import EvalModel
        from tooldojo.llm.llamacpp import LlamaCppChatModel

        original = evaluated.model
        codec = original.codec.name
        evaluated = EvalModel(
            LlamaCppChatModel(original.model_path, codec=codec, weights=options.weights),
            evaluated.mode,
            evaluated.tool_format,
            f"{evaluated.name} ({options.weights})",
            evaluated.spec,
        )
        original.close()
    model = evaluated.model
    for engine in getattr(model, "_engines", []):
        if draft_tokens is not None:
            engine.draft_tokens = draft_tokens
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        cpu_before, started = cpu_seconds(), time.perf_counter()
        run = anyio.run(
            run_then_close,
            lambda: run_bfcl(evaluated, Path(folder) / "entries.jsonl", settings, entries=entries),
            [model],
        )
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    stats = getattr(model, "stats", None)
    results = run.results
    n = len(results)
    drafts = "" if stats is None else f" · guesses up to {model._engines[0].draft_tokens}/step"
    print(
        f"{evaluated.name} · {evaluated.description}{drafts} · {n} entries of "
        f"{', '.join(options.categories)} · load average {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f} (2 cores)"
    )
    rate = n / wall * 60
    print(
        f"  {rate:.1f} entries/min wall ({wall:.0f} s), {n / cpu * 60:.1f} per CPU-minute "
        f"({cpu:.0f} CPU-s): 1,240 entries would take {1240 / rate:.0f} min "
        f"(target {TARGET_PER_MIN:.1f}/min, 30 min)"
    )
    valid = Counter(result.category for result in results if result.valid)
    total = Counter(result.category for result in results)
    print("  correct: " + ", ".join(f"{c} {valid[c]}/{total[c]}" for c in total))
    print(
        f"  per entry: {sum(r.prompt_tokens for r in results) / n:.0f} prompt tokens, "
        f"{sum(r.completion_tokens for r in results) / n:.1f} generated, "
        f"{sum(r.model_calls for r in results) / n:.2f} model calls"
    )
    if stats is not None:
        computed = stats.prompt_tokens - stats.reused_tokens
        steps = max(1, stats.decode_calls)
        print(
            f"  engine: {computed} prompt tokens computed of {stats.prompt_tokens} "
            f"(hit rate {stats.hit_rate:.2f}), {stats.generated_tokens} generated, "
            f"{stats.length_stops} of {stats.requests} answers cut at max_tokens, "
            f"{stats.loop_stops} cut in a repetition loop, "
            f"{stats.answer_end_stops} stopped after their calls"
        )
        print(
            f"  steps: {stats.decode_calls}, {stats.decoded_tokens / steps:.1f} tokens and "
            f"{stats.id_runs / steps:.2f} llama.cpp passes per step; guessed tokens "
            f"{stats.accepted_draft_tokens} confirmed of {stats.draft_tokens}; "
            f"{stats.decode_seconds:.0f} s inside llama_decode over {model.pool_size} engines"
        )
    return {"raw": {r.id: r.raw for r in results}, "cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="llamacpp")
    parser.add_argument("--mode", default=None)
    parser.add_argument("--categories", nargs="+", default=NON_LIVE)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--weights", default=None, help="llamacpp weights (f16, bf16, ...)")
    parser.add_argument(
        "--compare-drafts",
        action="store_true",
        help="run once without guessed tokens first, then with the default, and compare",
    )
    parser.add_argument(
        "--compare-weights", action="store_true", help="run with f16 first, then --weights"
    )
    options = parser.parse_args()
    settings = BFCLSettings(categories=options.categories, limit=options.limit)
    entries = load_entries(settings)
    if options.weights is not None and options.compare_weights:
        compare_weights(options, entries)
        return
    if not options.compare_drafts:
        run_once(options, entries, None)
        return
    plain = run_once(options, entries, 0)
    guessed = run_once(options, entries, None)
    same = sum(plain["raw"][key] == guessed["raw"][key] for key in plain["raw"])
    print(
        f"with guesses / without: {plain['cpu'] / guessed['cpu']:.2f} x CPU-speed, "
        f"{plain['wall'] / guessed['wall']:.2f} x wall-speed; identical raw answers "
        f"{same}/{len(plain['raw'])}"
    )


def compare_weights(options: argparse.Namespace, entries: list) -> None:
    """f16 (the default) then ``--weights``: speed and identical answers."""
    weights, options.weights = options.weights, None
    base = run_once(options, entries, None)
    options.weights = weights
    other = run_once(options, entries, None)
    same = sum(base["raw"][key] == other["raw"][key] for key in base["raw"])
    print(
        f"{weights} / f16: {base['cpu'] / other['cpu']:.2f} x CPU-speed; identical raw answers "
        f"{same}/{len(base['raw'])}"
    )


if __name__ == "__main__":
    main()
