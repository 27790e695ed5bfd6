"""Steps per second of tooldojo's GRPO wrapper against a bare TRL GRPOTrainer (goal >= 0.9x).

Same tiny model, data, settings and seed in one process; the wrapper adds the zero-weight
gate metrics and the metrics.csv callback. Prints both rates and their ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

STEPS = 8


def main() -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from tooldojo.train.data import PromptRenderer, grpo_rows, turn_samples
    from tooldojo.train.grpo import build_grpo_trainer, grpo_config
    from tooldojo.train.metrics import MetricsCSVCallback
    from tooldojo.train.settings import GRPOSettings
    from tooldojo.verify.reward import tool_call_reward
    from train_support import build_tiny_model, corpus_for, write_verified

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        trajectories = write_verified(base / "verified.jsonl", ["Paris", "Lyon", "Oslo", "Rome"])
        build_tiny_model(base / "model", corpus_for(trajectories))
        tokenizer = AutoTokenizer.from_pretrained(base / "model")
        tokenizer.padding_side = "left"
        rows = grpo_rows(turn_samples(trajectories), PromptRenderer(tokenizer))
        settings = GRPOSettings(
            max_steps=STEPS,
            batch_size=4,
            num_generations=4,
            learning_rate=1e-5,
            max_completion_length=32,
            export_gguf=None,
            logging_steps=1,
        )

        def timed(trainer) -> float:
            start = time.perf_counter()
            trainer.train()
            return STEPS / (time.perf_counter() - start)

        ours = build_grpo_trainer(
            AutoModelForCausalLM.from_pretrained(base / "model"),
            tokenizer,
            rows,
            settings,
            base / "ours",
        )
        ours.add_callback(MetricsCSVCallback(base / "ours" / "metrics.csv"))
        ours_rate = timed(ours)

        bare_config = grpo_config(settings, base / "bare", settings.learning_rate, None)
        bare = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(base / "model"),
            reward_funcs=[tool_call_reward],
            args=bare_config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        bare_rate = timed(bare)
    print(f"tooldojo GRPO wrapper: {ours_rate:.3f} steps/s")
    print(f"bare TRL GRPOTrainer:  {bare_rate:.3f} steps/s")
    print(f"ratio: {ours_rate / bare_rate:.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
