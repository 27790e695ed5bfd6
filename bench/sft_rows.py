"""Tokens an SFT epoch computes with one row per trajectory against one row per assistant turn.

A row per turn repeats the conversation so far as its prompt; a conversation row
(``SFTSettings.conversation_rows``, the default) computes it once and takes the loss on every
turn. Both learn the same answer tokens in the same contexts
(tests/test_train_batches.py), so on a CPU, where a step's time follows its tokens
(bench/train_throughput.py), the ratio of tokens is the ratio of epoch times. Counted on
real verified data, per category, with the embedded model's tokenizer and `run_sft`'s
rendering:

    python bench/sft_rows.py runs/scale/verified.jsonl --max-length 1536
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    from transformers import AutoTokenizer

    from tooldojo.train.data import PromptRenderer, load_verified, turn_samples
    from tooldojo.train.models import resolve_model
    from tooldojo.train.settings import SFTSettings
    from tooldojo.train.sft import sft_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="verified.jsonl (passed, train split)")
    parser.add_argument("--max-length", type=int, default=1536)
    parser.add_argument("--python-share", type=float, default=0.3)
    args = parser.parse_args()
    trajectories = load_verified(args.data)
    ref = resolve_model("embedded")  # the tokenizer alone, read from the GGUF
    renderer = PromptRenderer(AutoTokenizer.from_pretrained(ref.directory, gguf_file=ref.gguf_file))
    by_category: dict[str, list] = defaultdict(list)
    for trajectory in trajectories:
        by_category[trajectory.category or "?"].append(trajectory)
    print(f"{len(trajectories)} passed trajectories of {args.data}, max_length {args.max_length}")
    print(f"{'category':18s} {'turns':>6s} {'per turn':>10s} {'conversation':>13s} {'ratio':>6s}")
    for category, group in sorted([*by_category.items(), ("all", trajectories)]):
        samples = turn_samples(group)
        counts = []
        for conversation in (False, True):
            settings = SFTSettings(
                max_length=args.max_length,
                python_share=args.python_share,
                conversation_rows=conversation,
            )
            counts.append(sft_dataset(samples, renderer, settings)[1])
        turn, whole = counts
        assert turn["completion_tokens"] == whole["completion_tokens"] or (
            turn["dropped_too_long"] != whole["dropped_too_long"]
        )
        print(
            f"{category:18s} {whole['samples']:6d} {turn['tokens']:10d} {whole['tokens']:13d} "
            f"{turn['tokens'] / max(whole['tokens'], 1):5.2f}x"
            + (
                f"  (dropped over max_length: {turn['dropped_too_long']} turns per turn, "
                f"{whole['dropped_too_long']} as conversations)"
                if category == "all"
                else ""
            )
        )


if __name__ == "__main__":
    main()
