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

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.train.data import PromptRenderer, TurnSample, sft_row, syntax_plan
from tooldojo.train.python_calls import PYTHON_SYNTAX
from tooldojo.train.runner import TrainResult, lora_config, run_training, trainer_arguments
from tooldojo.train.settings import SFTSettings


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def sft_dataset(
    samples: list[TurnSample], renderer: PromptRenderer, settings: SFTSettings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows to train on and what they hold (the ``data`` section of ``result.json``).

    With ``conversation_rows`` (the default) a trajectory is one pre-tokenized row (``input_ids``
    and ``completion_mask``) whose mask covers every assistant turn: a causal model gives each
    turn the same context as a row per turn would (the conversation before it), so the loss
    has the same terms, but the shared history is computed once, not once per turn (a
    single-call trajectory's final answer row repeats the whole call row). The tokens are what
    TRL makes of each turn's prompt and completion; a trajectory whose turns do not tokenize
    as prefixes of the whole, or that is longer than ``max_length``, falls back to its turns'
    own rows. Otherwise each turn is a prompt-completion row (TRL masks the prompt).

    ``samples`` counts turns kept, ``rows`` rows. Reported shares are over the turns kept:
    ``python_call_share`` (rendered for Python-call syntax), ``no_call_share`` (the answer is
    text, no call), of which ``refusal_share`` (no offered tool fits), ``clarify_share`` (asks
    for a missing value) and ``final_answer_share`` (the answer after tool results).
    """
    built: list[_GroupRows] = []
    dropped = 0
    plan = syntax_plan(samples, settings.python_share, settings.seed)
    tokenize = _Tokens(renderer.tokenizer)
    for group in _by_trajectory(samples):
        syntax = plan[group[0].trajectory_id]
        texts = [sft_row(sample, renderer, syntax) for sample in group]
        whole = tokenize.conversation(texts) if settings.conversation_rows else None
        if whole is not None and len(group) > 1 and _fits(whole, settings.max_length):
            built.append(_GroupRows([whole], group, syntax, True, [whole]))
            continue
        out = _GroupRows([], [], syntax, False, [])
        for sample, text in zip(group, texts, strict=True):
            ids = tokenize.turn(text)
            if not _fits(ids, settings.max_length):
                dropped += 1
                continue
            out.rows.append(ids if settings.conversation_rows else text)
            out.samples.append(sample)
            out.ids.append(ids)
        built.append(out)
    repeated: list[_GroupRows] = []
    if settings.no_call_share is not None:
        repeated = repeats_for_no_call_share(built, settings.no_call_share, settings.seed)
    every = built + repeated
    rows = [row for group in every for row in group.rows]
    kept = [(sample, group.syntax) for group in every for sample in group.samples]
    kinds = [_kind(s) for s, _ in kept]
    no_call = sum(1 for s, _ in kept if not s.target.tool_calls)
    decisions = sum(1 for kind in kinds if kind != "text")
    summary = {
        "samples": len(kept),
        "rows": len(rows),
        "conversation_rows": sum(1 for group in every if group.conversation),
        "dropped_too_long": dropped,
        "max_length": settings.max_length,
        "tokens": sum(len(ids["input_ids"]) for group in every for ids in group.ids),
        "completion_tokens": sum(sum(ids["completion_mask"]) for g in every for ids in g.ids),
        "python_call_share": _share(sum(1 for _, x in kept if x == PYTHON_SYNTAX), len(kept)),
        "python_share_setting": settings.python_share,
        "no_call_share": _share(no_call, len(kept)),
        "refusal_share": _share(kinds.count("refuse"), len(kept)),
        "clarify_share": _share(kinds.count("clarify"), len(kept)),
        "final_answer_share": _share(kinds.count("text"), len(kept)),
        "decision_no_call_share": _share(decisions - kinds.count("call"), decisions),
        "repeated_trajectories": len(repeated),
    }
    return rows, summary


@dataclass
class _GroupRows:
    """What one trajectory gives the training set: its rows, the turns they teach, and the
    token ids (to count tokens, and so that a repeated trajectory is not tokenized again)."""

    rows: list[Any]
    samples: list[TurnSample]
    syntax: str
    conversation: bool
    ids: list[dict[str, list[int]]]


def _kind(sample: TurnSample) -> str:
    """call, refuse or clarify for a turn that answers a request (a decision), text for a
    final answer after tool results. Unlabelled text that answers the user directly counts as
    a refusal: it is a decision not to call."""
    if sample.label is not None:
        return sample.label.kind
    if sample.target.tool_calls:
        return "call"
    answers_user = bool(sample.history) and sample.history[-1].role == "user"
    return "refuse" if answers_user else "text"


def repeats_for_no_call_share(built: list[_GroupRows], share: float, seed: int) -> list[_GroupRows]:
    """Trajectories to train on once more so that ``share`` of the decision turns (calls,
    refusals, clarifying questions; not final answers) are no-call decisions.

    Why repeat rather than resample as GRPO does: an SFT row is a whole conversation, and a
    clarify conversation holds a call too, so the share moves by whole trajectories. Those
    holding a no-call decision are repeated, each once before any twice, in a seeded order,
    until the share is reached; nothing is left out. An empty list when the data is at or over
    the share already, or holds no no-call decision (nothing to repeat). A share that the
    repeatable trajectories cannot reach (each clarify conversation adds a call with its
    question) is an error, not an endless loop.
    """
    if not 0.0 <= share < 1.0:
        raise ToolDojoError(f"sft: no_call_share must be at least 0 and under 1, not {share}")
    tally = [(group, *_decisions(group)) for group in built]
    no_call = sum(a for _, a, _ in tally)
    call = sum(b for _, _, b in tally)
    repeatable = [entry for entry in tally if entry[1] > 0]
    if not repeatable or no_call >= share * (no_call + call):
        return []
    top_a = sum(a for _, a, _ in repeatable)
    top_b = sum(b for _, _, b in repeatable)
    if top_a <= share * (top_a + top_b):
        raise ToolDojoError(
            f"sft: no_call_share {share} cannot be reached by repeating trajectories: those "
            f"with a no-call decision hold {top_a} of them against {top_b} calls"
        )
    rng = random.Random(f"sft-no-call|{seed}")
    out: list[_GroupRows] = []
    order: list[tuple[_GroupRows, int, int]] = []
    while no_call < share * (no_call + call):
        if not order:
            order = rng.sample(repeatable, len(repeatable))
        group, a, b = order.pop()
        no_call, call = no_call + a, call + b
        out.append(group)
    return out


def _decisions(group: _GroupRows) -> tuple[int, int]:
    """A trajectory's no-call decisions and calls among the turns it trains."""
    kinds = [_kind(sample) for sample in group.samples]
    calls = kinds.count("call")
    return sum(1 for kind in kinds if kind != "text") - calls, calls


def _by_trajectory(samples: list[TurnSample]) -> list[list[TurnSample]]:
    """Consecutive turns of one trajectory, in order (as :func:`turn_samples` lists them); a
    trajectory listed twice (a hard sample added again) stays two groups, two rows."""
    groups: list[list[TurnSample]] = []
    for sample in samples:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and last.trajectory_id == sample.trajectory_id
            and sample.turn > last.turn
        ):
            groups[-1].append(sample)
        else:
            groups.append([sample])
    return groups


def _fits(row: dict[str, list[int]], max_length: int | None) -> bool:
    return not max_length or len(row["input_ids"]) <= max_length


class _Tokens:
    """Token ids as TRL's SFT preparation makes them from prompt-completion text: the EOS
    text appended to a completion that lacks it, ``tokenizer(text=...)``, and the completion
    starting where the prompt's ids and the whole's part (``common_prefix_length``)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.eos = getattr(tokenizer, "eos_token", None) or ""

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text=text)["input_ids"])

    def _completion(self, text: dict[str, str]) -> str:
        completion = text["completion"]
        return completion if completion.endswith(self.eos) else completion + self.eos

    def turn(self, text: dict[str, str]) -> dict[str, list[int]]:
        """One turn's row, as TRL would tokenize its prompt-completion text."""
        from trl.data_utils import common_prefix_length

        whole = self.ids(text["prompt"] + self._completion(text))
        start = common_prefix_length(self.ids(text["prompt"]), whole)
        return {"input_ids": whole, "completion_mask": [0] * start + [1] * (len(whole) - start)}

    def conversation(self, texts: list[dict[str, str]]) -> dict[str, list[int]] | None:
        """The last turn's row with every earlier turn's answer marked too, or ``None`` when
        an earlier turn's prompt and answer are not a prefix of the whole (in text or ids) or
        lack the EOS that would close them."""
        from trl.data_utils import common_prefix_length

        last = texts[-1]
        full_text = last["prompt"] + self._completion(last)
        whole = self.ids(full_text)
        mask = [0] * len(whole)
        for text in texts:
            if text is not last and not text["completion"].endswith(self.eos):
                return None
            answered = text["prompt"] + self._completion(text)
            if not full_text.startswith(answered):
                return None
            end = self.ids(answered)
            if common_prefix_length(end, whole) < len(end):
                return None
            start = common_prefix_length(self.ids(text["prompt"]), whole)
            mask[start : len(end)] = [1] * (len(end) - start)
        return {"input_ids": whole, "completion_mask": mask}


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
