"""SFT cold start on verified trajectories with TRL's ``SFTTrainer``.

Where the time goes on a CPU, and what this module does about it (``bench/train_throughput.py``
measures the result against a bare torch loop):

- **The LM head over every position.** TRL's fused head projects all positions onto the 49k
  vocabulary, forward and again in backward, although the loss covers only the assistant
  turn. :func:`tooldojo.train.head.add_selected_lm_head` projects only labelled positions.
- **Padding.** Samples range from a few hundred to a couple of thousand tokens; random
  batches pad every row to the longest. Batches are grouped by length instead
  (``group_by_length``, :mod:`tooldojo.train.batching`), or packed without
  cross-sample attention (``packing``: TRL's best-fit packing, padding-free, position ids
  restarting per sample; the attention mask keeps samples apart).
- **Truncated samples.** A sample longer than ``max_length`` would lose the end of its
  answer (a call cut in half); it is dropped and counted, never trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tooldojo.train.data import PromptRenderer, TurnSample, sft_row, syntax_plan
from tooldojo.train.python_calls import PYTHON_SYNTAX
from tooldojo.train.runner import TrainResult, lora_config, run_training, trainer_arguments
from tooldojo.train.settings import SFTSettings


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def sft_dataset(
    samples: list[TurnSample], renderer: PromptRenderer, settings: SFTSettings
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Rows to train on and what they hold (the ``data`` section of ``result.json``).

    Reported shares are over the rows kept: ``python_call_share`` (rendered for Python-call
    syntax), ``no_call_share`` (the answer is text, no call), of which ``refusal_share``
    (no offered tool fits), ``clarify_share`` (asks for a missing value) and
    ``final_answer_share`` (the answer after tool results).
    """
    tokenizer = renderer.tokenizer
    rows: list[dict[str, str]] = []
    kept: list[tuple[TurnSample, str]] = []
    dropped = tokens = completion_tokens = 0
    plan = syntax_plan(samples, settings.python_share, settings.seed)
    for sample in samples:
        syntax = plan[sample.trajectory_id]
        row = sft_row(sample, renderer, syntax)
        prompt = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        total = len(
            tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]
        )
        if settings.max_length and total > settings.max_length:
            dropped += 1
            continue
        rows.append(row)
        kept.append((sample, syntax))
        tokens += total
        completion_tokens += total - prompt
    kinds = [
        s.label.kind if s.label else ("call" if s.target.tool_calls else "text") for s, _ in kept
    ]
    no_call = sum(1 for s, _ in kept if not s.target.tool_calls)
    summary = {
        "samples": len(rows),
        "dropped_too_long": dropped,
        "max_length": settings.max_length,
        "tokens": tokens,
        "completion_tokens": completion_tokens,
        "python_call_share": _share(sum(1 for _, x in kept if x == PYTHON_SYNTAX), len(kept)),
        "python_share_setting": settings.python_share,
        "no_call_share": _share(no_call, len(kept)),
        "refusal_share": _share(kinds.count("refuse"), len(kept)),
        "clarify_share": _share(kinds.count("clarify"), len(kept)),
        "final_answer_share": _share(kinds.count("text"), len(kept)),
    }
    return rows, summary


def sft_config(settings: SFTSettings, out_dir: Path):
    """TRL's ``SFTConfig`` for ``settings`` (also used by the throughput benchmark)."""
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(settings, out_dir, settings.resolved_learning_rate()),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=settings.packing,
        packing_strategy="bfd",
    )


def _grouped_trainer_class():
    """``SFTTrainer`` drawing batches from :class:`LengthGroupedBatches`."""
    from trl import SFTTrainer

    from tooldojo.train.batching import LengthGroupedBatches

    class LengthGroupedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return LengthGroupedBatches(lengths, self._train_batch_size, self.args.seed)

    return LengthGroupedSFTTrainer


def build_sft_trainer(model, tokenizer, rows: list[dict], settings: SFTSettings, out_dir: Path):
    """An ``SFTTrainer`` on prompt-completion rows: loss on the completion (the turn) only."""
    from datasets import Dataset
    from trl import SFTTrainer

    grouped = settings.group_by_length and not settings.packing
    trainer_class = _grouped_trainer_class() if grouped else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=sft_config(settings, out_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )
    if settings.loss_positions_only:
        from tooldojo.train.head import add_selected_lm_head

        # Where TRL put its fused head: on the base model under PEFT.
        target = trainer.model
        if hasattr(target, "get_base_model"):
            target = target.get_base_model()
        add_selected_lm_head(target)
    return trainer


def run_sft(
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: SFTSettings | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on the passed trajectories of ``data``; resumable, see runner."""
    settings = settings or SFTSettings()
    return run_training(
        "sft",
        data,
        model,
        out_dir,
        settings,
        make_rows=lambda samples, renderer: sft_dataset(samples, renderer, settings),
        build_trainer=build_sft_trainer,
    )
