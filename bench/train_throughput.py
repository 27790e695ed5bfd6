"""SFT training tokens/s: ``tooldojo train sft``'s trainer against a bare torch loop (goal >= 0.9x).

SmolLM2-135M (the embedded GGUF, fp32), 2 threads, AdamW, on realistic samples planned over
``examples/specs`` (bench/train_samples.py) and rendered exactly as ``tooldojo train sft``
renders them. Both loops train on the *same token batches*: each batch our trainer draws
(length-grouped, prompts masked) goes through our training step, then through the bare
step, in turn, so load from other processes on this shared machine falls on both alike.

- **ours**: the ``SFTTrainer`` that ``run_sft`` builds, with its callbacks, logging and
  checkpointing defaults; its time is the wall time of ``trainer.train()`` minus the bare
  steps run inside it.
- **bare**: ``loss = model(input_ids, attention_mask, labels).loss; loss.backward();
  AdamW.step()`` (fused AdamW, as the Trainer uses), the textbook loop.

Tokens are counted identically for both: real (non-pad) tokens, prompt and answer.
``--stock`` measures TRL's defaults instead of ours (random batches, TRL's own LM head),
which is where the run started. ``--profile`` prints torch.profiler's top operators for two
steps of each path and exits. ``--precision bf16`` runs both loops under bf16 autocast (the
default ``auto`` picks it on a CPU with AMX, see ``CommonSettings.precision``); run it once
with ``fp32`` and once with ``bf16`` to compare the two on the same machine.

    python bench/train_throughput.py                  # 200 samples, 16 steps of 4
    python bench/train_throughput.py --steps 50       # the whole epoch
    python bench/train_throughput.py --stock
    python bench/train_throughput.py --precision fp32     # and --precision bf16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s the cores sustain on one square matmul (context for tokens/s)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def real_tokens(batch) -> int:
    return int(batch["attention_mask"].sum())


def padding_share(batches) -> float:
    total = sum(b["attention_mask"].numel() for b in batches)
    return 1 - sum(real_tokens(b) for b in batches) / total


def build(args, out_dir: Path, stock: bool):
    """(trainer, data summary) as ``run_sft`` would build them."""
    from tooldojo.train.models import load_for_training, resolve_model
    from tooldojo.train.settings import SFTSettings
    from tooldojo.train.sft import build_sft_trainer
    from train_samples import bench_rows

    settings = SFTSettings(
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
        export_gguf=None,
        logging_steps=1,
        group_by_length=not stock,
        loss_positions_only=not stock,
        precision=args.precision,
    )
    model, tokenizer = load_for_training(resolve_model("embedded"))
    rows, summary = bench_rows(args.samples, tokenizer, settings)
    trainer = build_sft_trainer(model, tokenizer, rows, settings, out_dir)
    return trainer, summary


def bare_stepper(learning_rate: float, bf16: bool):
    """A fresh copy of the model and one plain training step on a batch (bf16: under autocast,
    as the Trainer runs it)."""
    import contextlib

    import torch

    from tooldojo.train.models import load_for_training, resolve_model

    model, _ = load_for_training(resolve_model("embedded"))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, fused=True)

    def step(batch) -> float:
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with cast:
            loss = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()

    return step


def measure(args) -> None:
    import torch

    from tooldojo.train.runner import resolved_precision

    torch.set_num_threads(args.threads)
    gflops = matmul_gflops()
    with tempfile.TemporaryDirectory() as folder:
        trainer, summary = build(args, Path(folder), args.stock)
        bare_step = bare_stepper(trainer.args.learning_rate, bool(trainer.args.bf16))
        batches = []
        bare = {"seconds": 0.0, "tokens": 0}
        our_step = trainer.training_step

        def interleaved(model, inputs, *rest, **options):
            """Our step on the batch the trainer drew, then the bare step on that same batch."""
            loss = our_step(model, inputs, *rest, **options)
            batches.append({k: inputs[k] for k in ("attention_mask",)})
            started = time.perf_counter()
            bare_step(inputs)
            bare["seconds"] += time.perf_counter() - started
            bare["tokens"] += real_tokens(inputs)
            # Running figures, so a run cut short still says something.
            ours_so_far = time.perf_counter() - begun[0] - bare["seconds"]
            print(
                f"step {len(batches)}: ours {bare['tokens'] / ours_so_far:.1f} tokens/s, "
                f"bare {bare['tokens'] / bare['seconds']:.1f} tokens/s",
                file=sys.stderr,
                flush=True,
            )
            return loss

        trainer.training_step = interleaved
        begun = [time.perf_counter()]
        trainer.train()
        ours_seconds = time.perf_counter() - begun[0] - bare["seconds"]
    ours_tokens = sum(real_tokens(b) for b in batches)
    ours_rate = ours_tokens / ours_seconds
    bare_rate = bare["tokens"] / bare["seconds"]
    label = "TRL defaults (--stock)" if args.stock else "tooldojo train sft"
    print(f"samples: {summary['samples']} rows ({summary['dropped_too_long']} over max_length)")
    print(
        f"  mean tokens/row {summary['tokens'] / summary['samples']:.0f}, loss on "
        f"{summary['completion_tokens'] / summary['tokens']:.1%} of tokens, "
        f"python-call share {summary['python_call_share']}, "
        f"no-call share {summary['no_call_share']}"
    )
    print(f"batches: {len(batches)} of {args.batch_size}, padding {padding_share(batches):.1%}")
    print(f"fp32 2048x2048 matmul: {gflops:.0f} GFLOP/s on {args.threads} threads")
    print(f"precision: {resolved_precision(args.precision)} (asked: {args.precision})")
    print(f"{label}: {ours_tokens} tokens in {ours_seconds:.1f} s = {ours_rate:.1f} tokens/s")
    print(
        f"bare torch loop: {bare['tokens']} tokens in {bare['seconds']:.1f} s = "
        f"{bare_rate:.1f} tokens/s"
    )
    print(f"ratio: {ours_rate / bare_rate:.2f}x (goal >= 0.9x)")


def profile(args) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(args.threads)
    args.steps = 2
    for stock in (True, False):
        with tempfile.TemporaryDirectory() as folder:
            trainer, _ = build(args, Path(folder), stock)
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                trainer.train()
            name = "TRL defaults" if stock else "tooldojo"
            print(f"== {name}: 2 steps of {args.batch_size}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
            del trainer, prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="SFT samples (turns)")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps to time")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stock", action="store_true", help="time TRL's defaults instead")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--profile", action="store_true", help="profile two steps and exit")
    args = parser.parse_args()
    profile(args) if args.profile else measure(args)


if __name__ == "__main__":
    main()
