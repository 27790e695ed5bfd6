"""SFT cold start on verified trajectories with TRL's ``SFTTrainer``."""

from __future__ import annotations

from pathlib import Path

from tooldojo.train.data import sft_rows
from tooldojo.train.runner import TrainResult, lora_config, run_training, trainer_arguments
from tooldojo.train.settings import SFTSettings


def build_sft_trainer(model, tokenizer, rows: list[dict], settings: SFTSettings, out_dir: Path):
    """An ``SFTTrainer`` on prompt-completion rows: loss on the completion (the turn) only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        **trainer_arguments(settings, out_dir, settings.resolved_learning_rate()),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=settings.packing,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )


def run_sft(
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: SFTSettings | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on the passed trajectories of ``data``; resumable, see runner."""
    return run_training(
        "sft",
        data,
        model,
        out_dir,
        settings or SFTSettings(),
        make_rows=sft_rows,
        build_trainer=build_sft_trainer,
    )
