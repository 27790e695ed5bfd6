"""``tooldojo train sft|grpo|export-gguf``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(
    help="Train on verified trajectories: SFT, GRPO, GGUF export.", no_args_is_help=True
)

Data = Annotated[Path, typer.Option("--data", help="verified.jsonl (only passed=true rows).")]
ModelOpt = Annotated[
    str, typer.Option("--model", help="'embedded', a .gguf file or a Hugging Face directory.")
]
Out = Annotated[Path, typer.Option("--out", help="Output directory (resumable).")]
Steps = Annotated[int, typer.Option("--max-steps", help="Stop after N steps (-1: epochs).")]
Epochs = Annotated[float, typer.Option("--epochs")]
LR = Annotated[float | None, typer.Option("--lr", help="Learning rate (default: see docs).")]
Batch = Annotated[int | None, typer.Option("--batch-size")]
LoraR = Annotated[int, typer.Option("--lora-r", help="LoRA rank; 0 = full fine-tuning.")]
MaxLen = Annotated[int, typer.Option("--max-length", help="Max prompt+completion tokens.")]
Threads = Annotated[int | None, typer.Option("--threads", help="CPU threads (default 1).")]
Gguf = Annotated[str, typer.Option("--gguf", help="GGUF export type: f32, f16, q8_0 or none.")]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Matmul precision: auto (bf16 on a GPU or an AMX CPU, else fp32), fp32 or bf16.",
    ),
]
PythonShare = Annotated[
    float,
    typer.Option(
        "--python-share",
        help="Share of trajectories rendered for Python-call syntax [f(a=1)] (0 to 1).",
        min=0.0,
        max=1.0,
    ),
]


def _common(
    max_steps, epochs, lr, lora_r, max_length, threads, gguf, python_share, precision
) -> dict:
    """The settings both trainers take from the command line."""
    return {
        "python_share": python_share,
        "max_steps": max_steps,
        "epochs": epochs,
        "learning_rate": lr,
        "lora_r": lora_r,
        "max_length": max_length,
        "threads": threads,
        "export_gguf": None if gguf == "none" else gguf,
        "precision": precision,
    }


def _print_result(result) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    if result.skipped:
        console.print(f"already trained with these data and settings: {result.out_dir}")
    console.print(f"checkpoint: {result.checkpoint}")
    if result.gguf:
        console.print(f"gguf:       {result.gguf}")
    console.print(
        f"metrics:    {result.metrics_csv} ({result.steps} steps, {result.samples} samples, "
        f"{result.seconds:.0f} s)"
    )
    if result.data:
        console.print("data:       " + ", ".join(f"{k}={v}" for k, v in result.data.items()))
    if result.training:
        console.print("training:   " + ", ".join(f"{k}={v}" for k, v in result.training.items()))
    typer.echo(json.dumps(result.to_json()))


@train_app.command("sft")
def sft_command(
    data: Data,
    out: Out,
    model: ModelOpt = "embedded",
    max_steps: Steps = -1,
    epochs: Epochs = 1.0,
    lr: LR = None,
    batch_size: Batch = None,
    lora_r: LoraR = 0,
    max_length: MaxLen = 1024,
    threads: Threads = None,
    gguf: Gguf = "f16",
    python_share: PythonShare = 0.3,
    precision: Precision = "auto",
    group_by_length: Annotated[
        bool,
        typer.Option("--group-by-length/--random-batches", help="Batch samples of similar length."),
    ] = True,
    packing: Annotated[
        bool,
        typer.Option(
            "--packing/--no-packing",
            help="Pack samples into max-length rows (no cross-sample attention).",
        ),
    ] = False,
    conversation_rows: Annotated[
        bool,
        typer.Option(
            "--conversation-rows/--turn-rows",
            help="One row per trajectory with the loss on every assistant turn, or one per turn.",
        ),
    ] = True,
    no_call_share: Annotated[
        float | None,
        typer.Option(
            "--no-call-share",
            help="Share of decision turns that are no-call, by repeating such trajectories.",
        ),
    ] = None,
) -> None:
    """Supervised cold start (TRL SFTTrainer; loss on assistant turns only)."""
    from tooldojo.train.settings import SFTSettings
    from tooldojo.train.sft import run_sft

    settings = SFTSettings(
        **_common(
            max_steps, epochs, lr, lora_r, max_length, threads, gguf, python_share, precision
        ),
        group_by_length=group_by_length,
        packing=packing,
        conversation_rows=conversation_rows,
        no_call_share=no_call_share,
    )
    if batch_size:
        settings.batch_size = batch_size
    _print_result(run_sft(data, model, out, settings))


@train_app.command("grpo")
def grpo_command(
    data: Data,
    out: Out,
    model: ModelOpt = "embedded",
    max_steps: Steps = -1,
    epochs: Epochs = 1.0,
    lr: LR = None,
    batch_size: Batch = None,
    num_generations: Annotated[int, typer.Option("--num-generations", help="Group size.")] = 8,
    beta: Annotated[
        float, typer.Option("--beta", help="KL coefficient; 0 keeps no reference model.")
    ] = 0.0,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Lower clip range.")] = 0.2,
    epsilon_high: Annotated[float, typer.Option("--epsilon-high", help="Upper clip.")] = 0.28,
    max_completion_length: Annotated[int, typer.Option("--max-completion-length")] = 256,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature of the group.")
    ] = 1.0,
    lora_r: LoraR = 0,
    max_length: MaxLen = 1024,
    threads: Threads = None,
    use_vllm: Annotated[bool, typer.Option("--use-vllm", help="GPU: generate with vLLM.")] = False,
    gguf: Gguf = "f16",
    python_share: PythonShare = 0.3,
    precision: Precision = "auto",
    no_call_share: Annotated[
        float | None,
        typer.Option("--no-call-share", help="Share of prompts that are no-call decisions."),
    ] = None,
) -> None:
    """GRPO with the gated reward (TRL GRPOTrainer)."""
    from tooldojo.train.grpo import run_grpo
    from tooldojo.train.settings import GRPOSettings

    settings = GRPOSettings(
        **_common(
            max_steps, epochs, lr, lora_r, max_length, threads, gguf, python_share, precision
        ),
        num_generations=num_generations,
        beta=beta,
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        max_completion_length=max_completion_length,
        temperature=temperature,
        use_vllm=use_vllm,
        no_call_share=no_call_share,
    )
    settings.batch_size = batch_size or num_generations
    _print_result(run_grpo(data, model, out, settings))


@train_app.command("export-gguf")
def export_gguf_command(
    checkpoint: Annotated[Path, typer.Argument(help="A Hugging Face checkpoint directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The .gguf file to write.")],
    outtype: Annotated[str, typer.Option("--type", help="f32, f16 or q8_0.")] = "f16",
) -> None:
    """Export a checkpoint to GGUF for the embedded llamacpp backend."""
    from tooldojo.train.gguf_export import export_gguf

    typer.echo(str(export_gguf(checkpoint, out, outtype=outtype)))
