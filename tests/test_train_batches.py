"""How SFT batches are built and scored: prompt masking, length grouping, packing, the LM head."""

from __future__ import annotations

from pathlib import Path

import pytest

from tooldojo import Label, LabelCall, Message, ToolCall, Trajectory, append_jsonl
from tooldojo.train.data import PromptRenderer, turn_samples
from tooldojo.train.settings import SFTSettings
from tooldojo.train.sft import build_sft_trainer, sft_dataset
from train_support import WEATHER, build_tiny_model, corpus_for

# Requests of very different lengths, so batching choices show in the padding.
REQUESTS = [
    ("Oslo", "Weather in Oslo?"),
    ("Lima", "What is the weather like in Lima right now, please, in degrees celsius?"),
    ("Rome", "Rome weather."),
    (
        "Kyoto",
        "I am planning a walk through the old temples of Kyoto this afternoon and would like "
        "to know the current weather there, temperature and conditions, in celsius.",
    ),
    ("Nice", "Nice: weather now?"),
    ("Quito", "Could you look up the current weather in Quito for me, in celsius?"),
]


def trajectory(index: int, city: str, request: str) -> Trajectory:
    call = ToolCall(id=f"c{index}", name=WEATHER.name, arguments={"location": city})
    return Trajectory(
        id=f"b{index}",
        category="single",
        tools=[WEATHER],
        messages=[
            Message(role="user", content=request),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id=call.id, name=WEATHER.name, content='{"t": 18}'),
            Message(role="assistant", content=f"It is 18 degrees in {city}."),
        ],
        labels=[
            Label(calls=[LabelCall(name=WEATHER.name, arguments={"location": [city]})]),
            Label(kind="text"),
        ],
        passed=True,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list[Trajectory]]:
    base = tmp_path_factory.mktemp("batches")
    rows = [trajectory(i, city, text) for i, (city, text) in enumerate(REQUESTS)]
    append_jsonl(base / "verified.jsonl", rows)
    build_tiny_model(base / "model", corpus_for(rows))
    return base, rows


def trainer_for(tiny, tmp_path, **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, trajectories = tiny
    options = {
        "batch_size": 2,
        "export_gguf": None,
        "python_share": 0.0,
        "max_length": 512,
        "conversation_rows": False,  # a row per turn unless a test asks for conversations
    }
    settings = SFTSettings(**{**options, **overrides})
    tokenizer = AutoTokenizer.from_pretrained(base / "model")
    renderer = PromptRenderer(tokenizer)
    rows, summary = sft_dataset(turn_samples(trajectories), renderer, settings)
    model = AutoModelForCausalLM.from_pretrained(base / "model")
    trainer = build_sft_trainer(model, tokenizer, rows, settings, tmp_path)
    return trainer, rows, summary, tokenizer


def batches(trainer) -> list[dict]:
    return list(trainer.get_train_dataloader())


def test_prompt_tokens_are_masked_and_the_answer_is_learned(tiny, tmp_path):
    trainer, rows, summary, tokenizer = trainer_for(tiny, tmp_path)
    learned = 0
    for batch in batches(trainer):
        for ids, labels, mask in zip(
            batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
        ):
            text = tokenizer.decode(ids[mask.bool()])
            target = tokenizer.decode(ids[labels != -100])
            # The prompt (system, tools, user, earlier turns) never carries a label.
            assert "<tool_response>" not in target and '"parameters"' not in target
            assert target.endswith("<|im_end|>")
            row = next(r for r in rows if text == r["prompt"] + r["completion"])
            assert target == row["completion"]
            learned += int((labels != -100).sum())
    assert learned == summary["completion_tokens"]
    assert summary["completion_tokens"] < summary["tokens"] / 3


def _answer_nll(model, rows: list[dict]) -> float:
    """Summed negative log-likelihood of every answer token of ``rows`` (pre-tokenized)."""
    import torch

    total = 0.0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            log_probs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            picked = log_probs.gather(1, targets[:, None])[:, 0]
            mask = torch.tensor(row["completion_mask"][1:], dtype=torch.bool)
            total -= float(picked[mask].sum())
    return total


def test_a_conversation_row_learns_each_turn_in_the_context_its_own_row_gives(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tooldojo.train.sft import _Tokens

    base, trajectories = tiny
    tokenizer = AutoTokenizer.from_pretrained(base / "model")
    renderer = PromptRenderer(tokenizer)
    samples = turn_samples(trajectories)
    settings = SFTSettings(python_share=0.0, max_length=4096)
    rows, summary = sft_dataset(samples, renderer, settings)
    turns, per_turn = sft_dataset(
        samples, renderer, SFTSettings(**{**settings.to_dict(), "conversation_rows": False})
    )
    assert summary["conversation_rows"] == len(rows) == len(trajectories)
    assert summary["samples"] == per_turn["samples"] == len(samples) == 2 * len(trajectories)
    # Every answer token is learned once in each mode; the history is computed once, not twice.
    assert summary["completion_tokens"] == per_turn["completion_tokens"]
    assert summary["tokens"] < 0.75 * per_turn["tokens"]
    tokens = _Tokens(tokenizer)
    for row, pair in zip(rows, [turns[i : i + 2] for i in range(0, len(turns), 2)], strict=True):
        learned = [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m]
        assert tokenizer.decode(learned) == pair[0]["completion"] + pair[1]["completion"]
        assert "<tool_response>" not in tokenizer.decode(learned)
    # The same terms: a causal model scores each answer token alike in either row.
    model = AutoModelForCausalLM.from_pretrained(base / "model").eval()
    one_per_turn = [tokens.turn(t) for t in turns]
    assert abs(_answer_nll(model, rows) - _answer_nll(model, one_per_turn)) < 1e-3 * len(rows)
    # A trajectory listed twice (a hard sample added again) stays two rows.
    twice, summary = sft_dataset(turn_samples([trajectories[0]] * 2), renderer, settings)
    assert len(twice) == summary["conversation_rows"] == 2 and twice[0] == twice[1]
    # A conversation is as long as its last turn's row. One over max_length falls back to its
    # turns: the last is dropped and counted, the earlier ones kept.
    lasts = sorted(len(r["input_ids"]) for r in one_per_turn[1::2])
    capped = SFTSettings(**{**settings.to_dict(), "max_length": lasts[len(lasts) // 2]})
    rows, summary = sft_dataset(samples, renderer, capped)
    over = sum(1 for n in lasts if n > capped.max_length)
    assert over and summary["conversation_rows"] == len(trajectories) - over
    assert summary["dropped_too_long"] == over and len(rows) == len(trajectories)
    assert summary["samples"] == len(samples) - over
    assert all(len(r["input_ids"]) <= capped.max_length for r in rows)


def padding(batch_list: list[dict]) -> int:
    return sum(int((b["attention_mask"] == 0).sum()) for b in batch_list)


def test_batches_are_grouped_by_length(tiny, tmp_path):
    grouped, rows, _, tokenizer = trainer_for(tiny, tmp_path / "g")
    lengths = sorted(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in rows)
    # Least padding any split into batches of 2 can have: neighbours in sorted order.
    best = sum(b - a for a, b in zip(lengths[::2], lengths[1::2], strict=True))
    assert padding(batches(grouped)) == best
    shuffled, *_ = trainer_for(tiny, tmp_path / "r", group_by_length=False)
    assert padding(batches(shuffled)) > best  # what grouping saves on these samples


def test_packed_samples_do_not_attend_to_each_other(tiny, tmp_path):
    import torch

    trainer, *_ = trainer_for(tiny, tmp_path, packing=True, max_length=256)
    batch = batches(trainer)[0]
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    positions = batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), len(positions)]
    assert len(starts) >= 3  # at least two samples in the row
    first, second, end = starts[0], starts[1], starts[2]
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        alone = model(input_ids=batch["input_ids"][:, second:end]).logits
        leaky = model(
            input_ids=batch["input_ids"][:, first:end],
            attention_mask=torch.ones(1, end - first, dtype=torch.long),
        ).logits
    assert torch.allclose(packed[0, second:end], alone[0], atol=1e-4)
    # The same sample seeing its neighbour gives other logits: the comparison can fail.
    assert not torch.allclose(leaky[0, second - first :], alone[0], atol=1e-2)


def test_selected_lm_head_gives_the_full_heads_loss_and_gradients(tiny, tmp_path):
    import torch

    trainer, *_ = trainer_for(tiny, tmp_path)
    batch = batches(trainer)[0]
    model = trainer.model
    full = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    full.loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    fused = model(**batch, fused_lm_head=True)
    assert fused.label_mask.sum() == (batch["labels"][:, 1:] != -100).sum()
    assert torch.allclose(fused.loss, full.loss, atol=1e-5)
    fused.loss.backward()
    for got, want in zip((p.grad for p in model.parameters()), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    # Prompt positions get no log-probability at all (zero), answer positions do.
    assert (fused.log_probs[~fused.label_mask] == 0).all()
    assert (fused.log_probs[fused.label_mask] < 0).all()


def test_samples_over_max_length_are_dropped_and_counted(tiny):
    from transformers import AutoTokenizer

    base, trajectories = tiny
    tokenizer = AutoTokenizer.from_pretrained(base / "model")
    renderer = PromptRenderer(tokenizer)
    samples = turn_samples(trajectories)
    everything = SFTSettings(python_share=0.0, max_length=4096, conversation_rows=False)
    rows, summary = sft_dataset(samples, renderer, everything)
    lengths = sorted(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in rows)
    assert summary["dropped_too_long"] == 0 and summary["tokens"] == sum(lengths)
    limit = lengths[len(lengths) // 2]
    rows, summary = sft_dataset(
        samples, renderer, SFTSettings(python_share=0.0, max_length=limit, conversation_rows=False)
    )
    assert summary["dropped_too_long"] == sum(1 for n in lengths if n > limit) > 0
    assert summary["samples"] == len(rows) == len(samples) - summary["dropped_too_long"]
    assert all(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) <= limit for r in rows)


def test_grpo_prompts_that_leave_no_room_for_the_completion_are_dropped_and_counted(tiny):
    # TRL's GRPO truncates no prompt: one long multi-turn prompt once took a generation batch
    # past the machine's memory.
    from transformers import AutoTokenizer

    from tooldojo.train.grpo import grpo_dataset
    from tooldojo.train.settings import GRPOSettings

    base, trajectories = tiny
    tokenizer = AutoTokenizer.from_pretrained(base / "model")
    renderer = PromptRenderer(tokenizer)
    samples = turn_samples(trajectories)
    rows, summary = grpo_dataset(samples, renderer, GRPOSettings(max_length=8192))
    lengths = sorted(
        len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows
    )
    assert summary["dropped_too_long"] == 0 and rows
    room = 16
    limit = lengths[len(lengths) // 2] + room
    settings = GRPOSettings(max_length=limit, max_completion_length=room)
    rows, summary = grpo_dataset(samples, renderer, settings)
    assert summary["dropped_too_long"] == sum(1 for n in lengths if n + room > limit) > 0
    assert summary["samples"] == len(rows) == len(lengths) - summary["dropped_too_long"]


def test_length_grouped_batches_cover_every_sample_in_neighbouring_groups():
    from tooldojo.train.batching import LengthGroupedBatches

    lengths = [50, 10, 40, 20, 30, 60, 70]
    sampler = LengthGroupedBatches(lengths, batch_size=3, seed=1)
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(lengths)))
        batches = [sorted(lengths[i] for i in order[s : s + 3]) for s in range(0, 7, 3)]
        # Two full batches of neighbours in sorted order, the short remainder last.
        assert sorted(batches[:2]) == [[10, 20, 30], [40, 50, 60]] and batches[2] == [70]
        orders.append(tuple(order))
    assert len(set(orders)) > 1  # batch order changes between epochs
    sampler.set_epoch(2)
    assert tuple(sampler) == orders[2]  # and is reproducible (resume)


def test_lora_training_goes_through_the_selected_head(tiny, tmp_path, monkeypatch):
    """PEFT wraps the model after TRL patches it; the head must still be the one called."""
    from tooldojo.train import head
    from tooldojo.train.sft import run_sft

    calls = []
    original = head._selected_log_probs

    def counted(*args):
        calls.append(args[0].shape[0])
        return original(*args)

    monkeypatch.setattr(head, "_selected_log_probs", counted)
    base, _ = tiny
    settings = SFTSettings(
        max_steps=3, batch_size=2, lora_r=4, learning_rate=1e-2, export_gguf=None
    )
    result = run_sft(base / "verified.jsonl", str(base / "model"), tmp_path / "lora", settings)
    assert result.steps == 3 and result.training["tokens_per_s"] > 0
    assert len(calls) == 3 and all(rows > 0 for rows in calls)
    assert (result.checkpoint / "model.safetensors").is_file()  # merged, plain checkpoint
