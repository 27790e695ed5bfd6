"""SFT and GRPO through TRL on a tiny random Llama built here, and the GGUF export."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tooldojo import ToolDojoError, Trajectory, read_jsonl
from tooldojo.train import GRPOSettings, SFTSettings, run_grpo, run_sft
from tooldojo.train.data import PromptRenderer, grpo_rows, sft_rows, turn_samples
from tooldojo.train.metrics import read_metrics
from train_support import build_tiny_model, corpus_for, write_verified

CITIES = ["Paris", "Lyon", "Oslo", "Rome"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("train")
    rows = write_verified(base / "verified.jsonl", CITIES)
    build_tiny_model(base / "model", corpus_for(rows))
    return base


@pytest.fixture(scope="module")
def cold_started(workspace) -> Path:
    """The tiny model after enough SFT to emit calls sometimes (GRPO needs reward variance).

    Hermes calls only (``python_share=0``), and 300 steps: with the compact tool lines a tiny
    random model needs that long before it copies the city from the request at all."""
    settings = SFTSettings(
        max_steps=300, learning_rate=1e-2, batch_size=4, export_gguf=None, python_share=0.0
    )
    return run_sft(
        workspace / "verified.jsonl", str(workspace / "model"), workspace / "cold", settings
    ).checkpoint


def test_rendering_splits_turns_and_masks_prompts(workspace):
    from transformers import AutoTokenizer

    trajectories = list(read_jsonl(workspace / "verified.jsonl", Trajectory))
    samples = turn_samples(t for t in trajectories if t.passed)
    assert len(samples) == 2 * len(CITIES)  # call turn + answer turn each
    renderer = PromptRenderer(AutoTokenizer.from_pretrained(workspace / "model"))
    assert not renderer.native  # ChatML without tools: tools go into the system prompt
    rows = sft_rows(samples, renderer)
    first = rows[0]
    assert "get_current_weather(" in first["prompt"]  # the compact signature line
    assert first["prompt"].endswith("<|im_start|>assistant\n")
    assert first["completion"].startswith("<tool_call>")
    assert first["completion"].endswith("<|im_end|>")
    second = rows[1]
    assert "<tool_response>" in second["prompt"] and second["completion"].startswith("It is 18")
    grpo = grpo_rows(samples, renderer)
    assert len(grpo) == len(CITIES)  # prose answers after tool results are left to SFT
    label = json.loads(grpo[0]["label"])
    assert label["calls"][0]["arguments"]["location"] == ["Paris"]
    assert json.loads(grpo[0]["tools"])[0]["function"]["name"] == "get_current_weather"


def test_sft_five_steps_lower_the_loss_and_resume_is_a_no_op(workspace):
    settings = SFTSettings(max_steps=5, learning_rate=1e-2, batch_size=4, export_gguf=None)
    result = run_sft(
        workspace / "verified.jsonl", str(workspace / "model"), workspace / "sft", settings
    )
    rows = read_metrics(result.metrics_csv)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["step_time_s"] > 0 for r in rows)
    info = json.loads((result.checkpoint / "tooldojo_train.json").read_text())
    assert info["kind"] == "sft" and info["codec"] == "hermes"
    again = run_sft(
        workspace / "verified.jsonl", str(workspace / "model"), workspace / "sft", settings
    )
    assert again.skipped and again.steps == 5


def test_killed_sft_resumes_from_its_last_checkpoint(workspace, monkeypatch):
    from tooldojo.train import metrics

    settings = SFTSettings(
        max_steps=4, save_steps=2, learning_rate=1e-3, batch_size=4, export_gguf=None
    )
    original = metrics.MetricsCSVCallback.on_step_end

    def crash_at_step_3(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        if state.global_step == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(metrics.MetricsCSVCallback, "on_step_end", crash_at_step_3)
    out = workspace / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_sft(workspace / "verified.jsonl", str(workspace / "model"), out, settings)
    assert (out / "trainer" / "checkpoint-2").is_dir() and not (out / "result.json").exists()
    monkeypatch.setattr(metrics.MetricsCSVCallback, "on_step_end", original)
    result = run_sft(workspace / "verified.jsonl", str(workspace / "model"), out, settings)
    assert result.steps == 4 and not result.skipped
    # The killed process's rows (steps 1 and 2, up to its checkpoint) are kept.
    assert [int(r["step"]) for r in read_metrics(result.metrics_csv)] == [1, 2, 3, 4]


def test_grpo_five_steps_with_reward_variance(workspace, cold_started):
    settings = GRPOSettings(
        max_steps=5,
        batch_size=4,
        num_generations=4,
        learning_rate=1e-4,
        max_completion_length=48,
        export_gguf=None,
        python_share=0.0,
    )
    result = run_grpo(workspace / "verified.jsonl", str(cold_started), workspace / "grpo", settings)
    rows = read_metrics(result.metrics_csv)
    assert len(rows) == 5
    assert max(r["reward_std"] for r in rows) > 0
    # The label gate can only pass if the label column reached the reward function.
    assert max(r["rewards/label_gate/mean"] for r in rows) > 0
    assert max(r["rewards/format_gate/mean"] for r in rows) > 0
    assert {"rewards/schema_gate/std", "step_time_s", "groups_with_reward_variance"} <= set(rows[0])
    assert "kl" not in rows[0]  # beta 0 by default: no reference model, no KL term
    assert 0 < result.training["steps_with_reward_variance"] <= 1
    assert result.training["reward_batches"] == 5
    memory = result.training["memory"]  # a tiny model: its activations fit, nothing switched
    assert memory["step_tokens"] > 4 * 48 and memory["gradient_checkpointing"] is False


def test_grpo_trains_in_micro_batches_when_a_step_would_not_fit(
    workspace, cold_started, monkeypatch
):
    from tooldojo.train import grpo

    built = []
    original = grpo.build_grpo_trainer

    def keep(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(grpo, "physical_memory", lambda: 2**20)  # 1 MiB: nothing fits
    monkeypatch.setattr(grpo, "build_grpo_trainer", keep)
    settings = GRPOSettings(
        max_steps=1, batch_size=4, num_generations=4, max_completion_length=8, export_gguf=None
    )
    result = run_grpo(workspace / "verified.jsonl", str(cold_started), workspace / "gc", settings)
    memory = result.training["memory"]
    assert memory["micro_batch"] == 1 and memory["grad_accum"] == 4
    assert memory["gradient_checkpointing_auto"] is True  # one sequence alone does not fit
    args = built[0].args
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 4)
    assert args.gradient_checkpointing is True
    # Still one generation batch of one whole group, and one update, per step.
    assert result.steps == 1 and result.training["reward_batches"] == 1


def test_the_memory_estimate_would_have_caught_the_grpo_step_killed_at_24_gb():
    from types import SimpleNamespace

    from tooldojo.train.grpo import activation_bytes_per_token, memory_plan

    smollm2_135m = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    per_token = activation_bytes_per_token(smollm2_135m)
    assert per_token >= 1.8e6  # at least what the killed step held per token

    class Tokenizer:  # one token per word
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    settings = GRPOSettings(batch_size=8, num_generations=8, max_completion_length=96)
    killed = [{"prompt": "w " * 1536}, {"prompt": "short"}]
    plan = memory_plan(killed, Tokenizer(), settings, per_token, 24 * 2**30)
    assert plan.step_tokens == 8 * (1536 + 96) and plan.activation_gb > 24
    # Micro-batches of 2 fit in 12 GB (4 would not); no recomputation needed.
    assert (plan.micro_batch, plan.grad_accum) == (2, 4)
    assert not plan.gradient_checkpointing
    small = memory_plan([{"prompt": "w " * 100}], Tokenizer(), settings, per_token, 24 * 2**30)
    assert (small.micro_batch, small.grad_accum) == (8, 1)
    assert not small.gradient_checkpointing and not small.gradient_checkpointing_auto
    forced = replace(settings, gradient_checkpointing=True)
    plan = memory_plan([{"prompt": "w " * 100}], Tokenizer(), forced, per_token, 24 * 2**30)
    assert plan.gradient_checkpointing and not plan.gradient_checkpointing_auto
    # A micro-batching the user chose is kept, and checkpointing rescues what does not fit.
    chosen = replace(settings, grad_accum=2)
    plan = memory_plan(killed, Tokenizer(), chosen, per_token, 24 * 2**30)
    assert (plan.micro_batch, plan.grad_accum) == (8, 2) and plan.gradient_checkpointing


def test_grpo_rejects_a_batch_that_does_not_hold_whole_groups(workspace):
    with pytest.raises(ToolDojoError, match="multiple of the group size"):
        run_grpo(
            workspace / "verified.jsonl",
            str(workspace / "model"),
            workspace / "bad",
            GRPOSettings(batch_size=6, num_generations=4, max_steps=1, export_gguf=None),
        )


def test_unverified_data_is_refused(tmp_path, workspace):
    data = tmp_path / "raw.jsonl"
    data.write_text(
        "\n".join(
            line.replace('"passed":true', '"passed":null')
            for line in (workspace / "verified.jsonl").read_text().splitlines()
        )
        + "\n"
    )
    with pytest.raises(ToolDojoError, match="no trajectory with passed=true"):
        run_sft(data, str(workspace / "model"), tmp_path / "out", SFTSettings(max_steps=1))


def _greedy_transformers(checkpoint: Path, prompts: list[list[int]], tokens: int) -> list:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    outputs = []
    for ids in prompts:
        generated = model.generate(
            torch.tensor([ids]),
            max_new_tokens=tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        outputs.append(generated[0][len(ids) :].tolist())
    return outputs


def _greedy_llama_cpp(gguf: Path, prompts: list[list[int]], tokens: int) -> list:
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=256, n_threads=1, verbose=False)
    outputs = []
    for ids in prompts:
        out = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == tokens:
                break
        outputs.append(out)
    llm.close()
    return outputs


def test_gguf_export_of_trained_model_matches_transformers_greedy(workspace, cold_started):
    from transformers import AutoTokenizer

    from tooldojo.train import export_gguf

    gguf = export_gguf(cold_started, workspace / "tiny.gguf", outtype="f32")
    tokenizer = AutoTokenizer.from_pretrained(cold_started)
    texts = ["What's the weather in Oslo?", "Weather in Rome in celsius", "Hello there"]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
        )
        for t in texts
    ]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert _greedy_llama_cpp(gguf, ids, 12) == _greedy_transformers(cold_started, ids, 12)


@pytest.mark.slow
def test_gguf_export_of_the_embedded_model_is_lossless(tmp_path):
    """transformers(embedded GGUF) → our GGUF writer gives back the same tensors, and the
    llama.cpp model greedily generates what transformers generates."""
    import gguf
    import numpy as np

    from tooldojo.train import export_gguf
    from tooldojo.train.models import load_for_training, resolve_model

    ref = resolve_model("embedded")
    model, tokenizer = load_for_training(ref)
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    del model
    out = export_gguf(
        tmp_path / "hf", tmp_path / "smol.gguf", outtype="f32", source_gguf=ref.source_gguf
    )
    original = gguf.GGUFReader(str(ref.source_gguf))
    exported = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    assert len(exported) == len(original.tensors)
    for tensor in original.tensors:
        expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(-1)
        assert np.array_equal(np.asarray(exported[tensor.name].data).reshape(-1), expected)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    assert _greedy_llama_cpp(out, ids, 6) == _greedy_transformers(tmp_path / "hf", ids, 6)


def test_missing_data_file_is_a_clear_error(tmp_path, workspace):
    with pytest.raises(ToolDojoError, match=r"nope\.jsonl: no such data file"):
        run_sft(tmp_path / "nope.jsonl", str(workspace / "model"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_grpo_draws_the_asked_share_of_no_call_decisions() -> None:
    from tooldojo.train.grpo import with_no_call_share

    def row(kind: str, n: int) -> dict:
        return {"prompt": f"{kind}-{n}", "label": json.dumps({"kind": kind}), "codec": "hermes"}

    rows = [row("call", n) for n in range(9)] + [row("refuse", n) for n in range(3)]

    def share(drawn: list[dict]) -> float:
        return sum(json.loads(r["label"])["kind"] != "call" for r in drawn) / len(drawn)

    for wanted in (0.0, 0.25, 0.75, 1.0):
        drawn = with_no_call_share(rows, wanted, seed=0)
        assert len(drawn) == len(rows) and share(drawn) == wanted
    half = with_no_call_share(rows, 0.5, seed=0)
    decisions = [r["prompt"] for r in half if r["prompt"].startswith("refuse")]
    assert sorted(set(decisions)) == ["refuse-0", "refuse-1", "refuse-2"]  # all, then repeats
    assert half == with_no_call_share(rows, 0.5, seed=0)  # seeded
    calls_only = [r for r in rows if r["prompt"].startswith("call")]
    assert with_no_call_share(calls_only, 0.5, seed=0) == calls_only  # nothing to draw
    with pytest.raises(ToolDojoError, match="no_call_share"):
        with_no_call_share(rows, 1.5, seed=0)


def test_precision_is_bf16_only_where_the_hardware_multiplies_it(monkeypatch):
    import torch

    from tooldojo.train.runner import device_arguments, resolved_precision

    with pytest.raises(ToolDojoError, match="precision must be one of"):
        SFTSettings(precision="fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False})
    assert resolved_precision("auto") == "fp32"  # AVX2 or plain AVX-512: bf16 is emulated
    assert device_arguments("auto") == {"use_cpu": True, "bf16": False}
    assert resolved_precision("bf16") == "bf16"  # asked for, it is used anyway
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert resolved_precision("auto") == "bf16"
    assert resolved_precision("fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_arguments("auto") == {"use_cpu": False, "bf16": True}


def test_bf16_sft_lowers_the_loss_and_records_its_precision(workspace):
    settings = SFTSettings(
        max_steps=5, learning_rate=1e-2, batch_size=4, export_gguf=None, precision="bf16"
    )
    result = run_sft(
        workspace / "verified.jsonl", str(workspace / "model"), workspace / "bf16", settings
    )
    rows = read_metrics(result.metrics_csv)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert result.training["precision"] == "bf16"
    fp32 = run_sft(
        workspace / "verified.jsonl",
        str(workspace / "model"),
        workspace / "fp32",
        replace(settings, precision="fp32"),
    )
    assert fp32.training["precision"] == "fp32"
    # Not the same computation: bf16 rounds the matmuls, so the losses part.
    assert read_metrics(fp32.metrics_csv)[0]["loss"] != rows[0]["loss"]
