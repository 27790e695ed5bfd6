"""Training settings, one dataclass per trainer (as TRL does), with documented defaults.

GRPO defaults start from published settings: group size 8 (DeepSeekMath used 64, most
open replications 8-16), no KL term (DAPO and Dr. GRPO drop it; it would keep a second copy
of the model in memory), clip range 0.2 with a
higher upper bound 0.28 (DAPO's clip-higher). The learning rate defaults to 1e-6 for
models over 1B parameters (the usual GRPO setting) and 5e-6 for smaller ones, which
barely move at 1e-6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tooldojo.errors import ToolDojoError
from tooldojo.llm.codecs import DEFAULT_CODEC

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class CommonSettings:
    learning_rate: float | None = None
    """None: a default chosen from the trainer, model size and LoRA (see each trainer)."""
    epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run ``epochs``)."""
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    """Longest prompt+completion in tokens (prompts carry tools); a longer sample is dropped and
    counted, never truncated (SFT: the whole sample; GRPO: a prompt that leaves less than
    ``max_completion_length`` for the answer)."""
    lora_r: int = 0
    """LoRA rank; 0 trains all weights. The saved checkpoint is always merged."""
    lora_alpha: int | None = None
    """None: 2 x lora_r."""
    lora_dropout: float = 0.05
    seed: int = 0
    threads: int | None = None
    """CPU threads for torch; None: $OMP_NUM_THREADS or 1."""
    logging_steps: int = 1
    save_steps: int = 50
    """Trainer checkpoints for resuming a killed run (only the last one is kept)."""
    codec: str = DEFAULT_CODEC
    """How calls are written for models whose chat template lacks tool support."""
    native_tools: bool | None = None
    """Force (True) or forbid (False) rendering tools with the chat template; None: detect."""
    gradient_checkpointing: bool = False
    export_gguf: str | None = "f16"
    """Write ``model.gguf`` (f32, f16 or q8_0) for the llamacpp backend; None to skip."""
    python_share: float = 0.3
    """Share of trajectories rendered for Python-call syntax (``[f(a=1)]``) with one of our
    own system prompts asking for it; the rest use the model's native format."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """The matmuls' precision (weights and optimizer state stay fp32; bf16 is torch's
    autocast). ``auto``: bf16 on a GPU and on a CPU whose AMX units multiply bf16 (on the
    2-core Xeon of 28 Nov, matmuls 8.5 x and training steps 1.7 x faster than fp32,
    docs/train.md); fp32 elsewhere, where bf16 is emulated and slower. The result records
    which one ran."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ToolDojoError(
                f"train: precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SFTSettings(CommonSettings):
    """Supervised cold start: learning rate 5e-5 for full fine-tuning, 2e-4 with LoRA."""

    group_by_length: bool = True
    """Batch samples of similar length together (little padding). Ignored with ``packing``."""
    packing: bool = False
    """Pack samples into ``max_length`` rows (TRL best-fit, padding-free, no cross-sample
    attention). On a CPU, grouped batches are faster: a packed row's attention is computed
    over the whole row and then masked."""
    loss_positions_only: bool = True
    """Project onto the vocabulary only the positions the loss is taken on (see train/head.py)."""
    conversation_rows: bool = True
    """One row per trajectory, the loss on each of its assistant turns, instead of one row per
    turn that repeats the conversation so far as its prompt: the same (context, token) pairs
    to learn, each token computed once (see :func:`tooldojo.train.sft.sft_dataset`)."""
    no_call_share: float | None = None
    """Share of the decision turns (a call, a refusal or a clarifying question; not a final
    answer) that are no-call decisions, reached by training once more on trajectories that
    hold one (:func:`tooldojo.train.sft.repeats_for_no_call_share`); ``None`` keeps the data's
    own share. The scale loop's data held 16 % (290 of 1,767 decisions in iteration 0), and
    its checkpoint then got 1 of 23 held-out no-call turns right (it called on 17). The same
    100 steps at 0.4 left the held-out decisions where they were (1/28 in both) and got fewer
    call turns right (docs/results/sft_no_call_heldout.json), so it is off by default."""

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.lora_r else 5e-5


@dataclass
class GRPOSettings(CommonSettings):
    """GRPO with the gated reward. ``batch_size`` must be a multiple of ``num_generations``."""

    batch_size: int = 8
    num_generations: int = 8
    """Group size: completions sampled per prompt to estimate the advantage."""
    beta: float = 0.0
    """KL coefficient against the reference (starting) model. 0 (the default) keeps no
    reference model in memory; DeepSeekMath used 0.04."""
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    max_completion_length: int = 256
    temperature: float = 1.0
    use_vllm: bool = False
    """GPU only: generate with TRL's vLLM integration (colocated)."""
    gate_metrics: bool = True
    """Log format/schema/label gate pass rates as zero-weight rewards."""
    no_call_share: float | None = None
    """Share of the prompts that are no-call decisions (refuse, clarify), drawn to it with a
    seeded resample; ``None`` keeps the data's own share. A step of 8 completions holds one
    prompt, so 8 steps see about 3 decisions at the data's usual 40 %."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further GRPOConfig fields, passed through as given."""

    def resolved_learning_rate(self, parameters: int) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-6 if parameters > 1_000_000_000 else 5e-6
