"""Does batching change what the embedded model answers? A BFCL subset scored both ways.

A consistency check of the engine, not an evaluation: the same fixed BFCL entries (the first
``--per-category`` ids of simple_python and irrelevance, sampled with a fixed seed) are answered
by the embedded model in BFCL's prompting mode, greedy, twice:

* batched: the default engines (``--pool-size`` x ``--max-batch`` sequences per pass, prefixes
  reused from the KV cache), all entries in flight at once;
* reference: one engine, one sequence at a time (``max_batch=1``), every prompt computed from
  scratch (``reuse_prefixes=False``), one token per pass (``draft_tokens=0``: no guessed
  tokens), one entry at a time.

Both are scored with bfcl-eval's own checkers (``tooldojo.eval``), and the script prints both
scores and, per entry, whether the two raw answers are identical. BFCL is test data here and
nothing is tuned on it.

    python bench/bfcl_batched_agreement.py [--per-category 20] [--max-tokens 512]
        [--model TRAINED.gguf --mode fc]

Exits 1 when fewer than ``--min-agreement`` of the answers are identical or the scores differ,
so a batching bug that changes answers cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, run_bfcl
from tooldojo.eval.models import EvalModel
from tooldojo.llm.llamacpp import LlamaCppChatModel

CATEGORIES = ["simple_python", "irrelevance"]
SETUP = {"mode": "prompting"}


def score(
    model: LlamaCppChatModel, name: str, settings: BFCLSettings, folder: Path, entries: list
) -> tuple[dict[str, object], float]:
    """Raw answer and validity per entry id, and the wall time."""
    mode = SETUP["mode"]
    tool_format = "bfcl-python" if mode == "prompting" else f"codec:{model.codec.name}"
    evaluated = EvalModel(model, mode, tool_format, name)
    started = time.perf_counter()
    run = anyio.run(
        lambda: run_bfcl(evaluated, folder / f"{name}.jsonl", settings, entries=entries)
    )
    elapsed = time.perf_counter() - started
    return {result.id: (result.raw, result.valid) for result in run.results}, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-category", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--weights", default="f16")
    parser.add_argument("--min-agreement", type=float, default=0.95)
    parser.add_argument("--model", default=None, help="a GGUF file (default: the embedded one)")
    parser.add_argument(
        "--mode", default="prompting", choices=["prompting", "fc"], help="fc: the hermes codec"
    )
    parser.add_argument(
        "--no-flash-attn", action="store_true", help="both paths without flash attention"
    )
    parser.add_argument(
        "--draft-tokens", type=int, default=None, help="the batched path's guesses per step"
    )
    options = parser.parse_args()
    SETUP["mode"] = options.mode
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    settings = BFCLSettings(
        categories=CATEGORIES, limit=options.per_category, seed=0, max_tokens=options.max_tokens
    )
    entries = load_entries(settings)
    batched = LlamaCppChatModel(
        options.model,
        pool_size=options.pool_size,
        max_batch=options.max_batch,
        weights=options.weights,
        flash_attn=not options.no_flash_attn,
        **({} if options.draft_tokens is None else {"draft_tokens": options.draft_tokens}),
    )
    reference = LlamaCppChatModel(
        options.model,
        pool_size=1,
        max_batch=1,
        weights=options.weights,
        reuse_prefixes=False,
        draft_tokens=0,
        flash_attn=not options.no_flash_attn,
    )
    with tempfile.TemporaryDirectory() as folder:
        settings.concurrency = options.pool_size * options.max_batch
        got, batched_s = score(batched, "batched", settings, Path(folder), entries)
        settings.concurrency = 1
        want, reference_s = score(reference, "reference", settings, Path(folder), entries)
    print(
        f"batched: hit rate {batched.hit_rate:.2f}, "
        f"{batched.stats.id_runs / max(1, batched.stats.decode_calls):.2f} passes per step; "
        f"reference: hit rate {reference.hit_rate:.2f} (must be 0)"
    )
    same = 0
    for entry in entries:
        (raw, valid), (raw_ref, valid_ref) = got[entry.id], want[entry.id]
        identical = raw == raw_ref
        same += identical
        where = ""
        if not identical:
            text, text_ref = str(raw), str(raw_ref)
            shared = next(
                (i for i, (a, b) in enumerate(zip(text, text_ref, strict=False)) if a != b),
                min(len(text), len(text_ref)),
            )
            where = f" from character {shared} of {len(text)} / {len(text_ref)}"
        print(
            f"  {entry.id:28s} batched {'ok ' if valid else 'bad'}  reference "
            f"{'ok ' if valid_ref else 'bad'}  {'same' if identical else 'DIFFERENT'}{where}"
        )
    for category in CATEGORIES:
        ids = [entry.id for entry in entries if entry.category == category]
        print(
            f"{category}: batched {sum(got[i][1] for i in ids)}/{len(ids)}, "
            f"reference {sum(want[i][1] for i in ids)}/{len(ids)}"
        )
    agreement = same / len(entries)
    print(
        f"identical answers: {same}/{len(entries)} = {agreement:.2f} "
        f"(batched {batched_s:.0f} s, reference {reference_s:.0f} s, "
        f"{reference_s / batched_s:.1f}x)"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    scores_equal = all(
        sum(got[e.id][1] for e in entries if e.category == c)
        == sum(want[e.id][1] for e in entries if e.category == c)
        for c in CATEGORIES
    )
    return 0 if agreement >= options.min_agreement and scores_equal else 1


if __name__ == "__main__":
    sys.exit(main())
