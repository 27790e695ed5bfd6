"""Training data shaped for what tool-calling benchmarks ask: Python-call syntax, measured
no-call share, and GRPO groups whose rewards vary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tooldojo import Label, Message, Trajectory, append_jsonl
from tooldojo.errors import ToolDojoError
from tooldojo.llm.codecs import get_codec
from tooldojo.train import GRPOSettings, run_grpo
from tooldojo.train.data import PromptRenderer, sft_rows, syntax_plan, turn_samples
from tooldojo.train.python_calls import PYTHON_CALL_PROMPTS
from tooldojo.train.rewards import RewardVariance
from tooldojo.train.settings import SFTSettings
from tooldojo.train.sft import sft_dataset
from train_support import WEATHER, build_tiny_model, build_tiny_tokenizer, weather_trajectory

CITIES = [f"City{i}" for i in range(40)]


def irrelevant(index: int) -> Trajectory:
    return Trajectory(
        id=f"irr{index}",
        category="irrelevance",
        tools=[WEATHER],
        messages=[
            Message(role="user", content=f"Write me haiku number {index} about autumn."),
            Message(role="assistant", content="I can only look up the weather, not write poems."),
        ],
        labels=[Label(kind="refuse")],
        passed=True,
    )


@pytest.fixture(scope="module")
def renderer():
    trajectories = [weather_trajectory(i, c) for i, c in enumerate(CITIES[:4])]
    texts = [m.content or "" for t in trajectories for m in t.messages]
    return PromptRenderer(build_tiny_tokenizer(texts * 4))


def test_a_share_of_samples_asks_for_and_answers_in_python_calls(renderer):
    trajectories = [weather_trajectory(i, c) for i, c in enumerate(CITIES)]
    samples = turn_samples(trajectories)
    rows = sft_rows(samples, renderer, python_share=0.5, seed=3)
    python = [r for r in rows if "Python" in r["prompt"]]
    assert 0.3 <= len(python) / len(rows) <= 0.7
    pythonic = get_codec("pythonic")
    for row in python:
        if row["completion"].startswith("["):
            (call,) = pythonic.parse(row["completion"].removesuffix("<|im_end|>"))
            assert call.name == "get_current_weather" and call.arguments["unit"] == "celsius"
            assert "<tool_call>" not in row["prompt"]
    native = [r for r in rows if r not in python]
    assert native and all("<tool_call>" in r["prompt"] for r in native)
    # Both turns of a trajectory use one syntax (the answer turn repeats the call in history).
    answer_turns = [r for r in python if not r["completion"].startswith("[")]
    assert answer_turns and all("[get_current_weather(" in r["prompt"] for r in answer_turns)
    # Nothing drawn at share 0.
    assert not any("Python" in r["prompt"] for r in sft_rows(samples, renderer))


def test_python_prompts_are_our_own_words():
    """No run of six words from BFCL's prompting text (held by the pythonic codec for
    evaluation) appears in a training prompt."""

    def shingles(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z]+", text.lower())
        return {tuple(words[i : i + 6]) for i in range(len(words) - 5)}

    evaluation = shingles(get_codec("pythonic").render([]))
    assert evaluation  # the comparison has something to compare against
    for prompt in PYTHON_CALL_PROMPTS:
        assert not shingles(prompt) & evaluation, shingles(prompt) & evaluation
        assert not shingles(prompt) & shingles(get_codec("hermes").render([]))


def test_unwritable_calls_stay_native(renderer):
    bad = weather_trajectory(0, "Oslo")
    for message in bad.messages:
        for call in message.tool_calls or []:
            call.name = "get-weather"  # a valid tool name, not a Python identifier
    samples = turn_samples([bad])
    assert syntax_plan(samples, 1.0, 0) == {bad.id: "native"}


def test_the_python_share_is_exact_over_the_writable_trajectories():
    """30 % of 50 trajectories is 15, whatever the seed; independent draws per trajectory
    gave anywhere from about 9 to 21. Unwritable trajectories stay native and do not count."""
    trajectories = [weather_trajectory(i, f"Town{i}") for i in range(50)]
    bad = weather_trajectory(99, "Oslo")
    for message in bad.messages:
        for call in message.tool_calls or []:
            call.name = "get-weather"
    samples = turn_samples([*trajectories, bad])
    for seed in range(5):
        plan = syntax_plan(samples, 0.3, seed)
        assert list(plan.values()).count("python") == 15 and plan[bad.id] == "native"
    assert syntax_plan(samples, 0.3, 0) != syntax_plan(samples, 0.3, 1)  # the seed draws
    assert set(syntax_plan(samples, 0.0, 0).values()) == {"native"}


def test_data_summary_measures_python_and_no_call_shares(renderer):
    trajectories = [weather_trajectory(i, c) for i, c in enumerate(CITIES[:8])]
    trajectories += [irrelevant(i) for i in range(4)]
    samples = turn_samples(trajectories)  # 8 calls, 8 final answers, 4 refusals
    settings = SFTSettings(python_share=0.0, max_length=4096)
    _, summary = sft_dataset(samples, renderer, settings)
    assert summary["samples"] == 20
    assert summary["no_call_share"] == 0.6
    assert summary["refusal_share"] == 0.2 and summary["final_answer_share"] == 0.4
    assert summary["python_call_share"] == 0.0
    _, summary = sft_dataset(samples, renderer, SFTSettings(python_share=1.0, max_length=4096))
    assert summary["python_call_share"] == 1.0


def clarifying(index: int) -> Trajectory:
    """Asks for the missing city, then calls: one no-call decision and one call."""
    done = weather_trajectory(index, CITIES[index])
    return done.model_copy(
        update={
            "id": f"clar{index}",
            "category": "clarify",
            "messages": [
                Message(role="user", content="What's the weather like?"),
                Message(role="assistant", content="Which city do you mean?"),
                Message(role="user", content=CITIES[index]),
                *done.messages[1:],
            ],
            "labels": [Label(kind="clarify"), *done.labels],
        }
    )


def test_sft_trains_again_on_no_call_trajectories_up_to_the_asked_share(renderer):
    trajectories = [weather_trajectory(i, c) for i, c in enumerate(CITIES[:8])]
    trajectories += [irrelevant(i) for i in range(2)]
    samples = turn_samples(trajectories)  # decisions: 8 calls, 2 refusals
    plain_rows, plain = sft_dataset(samples, renderer, SFTSettings(python_share=0.0))
    assert plain["decision_no_call_share"] == 0.2 and plain["repeated_trajectories"] == 0

    settings = SFTSettings(python_share=0.0, no_call_share=0.5)
    rows, summary = sft_dataset(samples, renderer, settings)
    # 8 refusals against 8 calls: each refusal trajectory trained 4 times, not one of them 7.
    assert summary["decision_no_call_share"] == 0.5 and summary["repeated_trajectories"] == 6
    assert len(rows) == len(plain_rows) + 6 and summary["refusal_share"] == round(8 / 24, 4)
    refusal_rows = [row for row in rows if row not in plain_rows[:8]]
    assert plain_rows[8] != plain_rows[9] and len(refusal_rows) == 8
    assert refusal_rows.count(plain_rows[8]) == refusal_rows.count(plain_rows[9]) == 4
    assert sft_dataset(samples, renderer, settings)[0] == rows  # seeded

    # At or over the share already, or nothing to repeat: the data as it is.
    for share in (0.0, 0.2):
        as_is = SFTSettings(python_share=0.0, no_call_share=share)
        assert sft_dataset(samples, renderer, as_is)[1]["repeated_trajectories"] == 0
    calls_only = turn_samples(trajectories[:8])
    assert sft_dataset(calls_only, renderer, settings)[1]["repeated_trajectories"] == 0
    # A clarify conversation brings a call with its question: half is as far as they go.
    with_clarify = turn_samples([*trajectories[:8], clarifying(0), clarifying(1)])
    with pytest.raises(ToolDojoError, match="cannot be reached"):
        sft_dataset(with_clarify, renderer, settings)
    reached = sft_dataset(with_clarify, renderer, SFTSettings(python_share=0.0, no_call_share=0.4))
    assert reached[1]["decision_no_call_share"] >= 0.4
    with pytest.raises(ToolDojoError, match="no_call_share"):
        sft_dataset(samples, renderer, SFTSettings(no_call_share=1.0))


def constant_reward(prompts=None, completions=None, completion_ids=None, **columns):
    return [0.5] * len(completions)


def test_reward_variance_counts_only_groups_whose_rewards_differ():
    constant = RewardVariance(constant_reward, num_generations=4)
    for _ in range(3):
        constant(completions=["a"] * 8)
    assert constant.summary()["steps_with_reward_variance"] == 0.0

    logged = {}
    scores = iter([[1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], [0.0] * 8])

    def varying(**_):
        return next(scores)

    tracked = RewardVariance(varying, num_generations=4)
    tracked(completions=["a"] * 8, log_metric=logged.__setitem__)
    assert logged == {"groups_with_reward_variance": 0.5}
    tracked(completions=["a"] * 8)
    assert tracked.summary() == {
        "reward_batches": 2,
        "steps_with_reward_variance": 0.5,
        "groups_with_reward_variance": 0.25,
    }


@pytest.fixture(scope="module")
def grpo_data(tmp_path_factory) -> Path:
    from train_support import corpus_for, write_verified

    base = tmp_path_factory.mktemp("grpo")
    rows = write_verified(base / "verified.jsonl", CITIES[:4])
    append_jsonl(base / "verified.jsonl", [irrelevant(0)])
    build_tiny_model(base / "model", corpus_for(rows))
    return base


def test_grpo_with_a_constant_reward_reports_no_step_with_variance(grpo_data, monkeypatch):
    from tooldojo.train import grpo

    def constant_functions(codec, gate_metrics):
        return [constant_reward], [1.0]

    monkeypatch.setattr(grpo, "grpo_reward_functions", constant_functions)
    settings = GRPOSettings(
        max_steps=2, batch_size=4, num_generations=4, max_completion_length=8, export_gguf=None
    )
    result = run_grpo(
        grpo_data / "verified.jsonl", str(grpo_data / "model"), grpo_data / "const", settings
    )
    assert settings.beta == 0.0  # no reference model by default
    assert result.training["reward_batches"] == 2
    assert result.training["steps_with_reward_variance"] == 0.0
    assert result.data["no_call_share"] == 0.2  # the refusal turn is a GRPO row too


def test_cli_sft_takes_the_new_options_and_reports_the_data(grpo_data):
    import json

    from typer.testing import CliRunner

    from tooldojo.cli import app

    out = grpo_data / "cli-sft"
    result = CliRunner().invoke(
        app,
        [
            "train", "sft", "--data", str(grpo_data / "verified.jsonl"),
            "--model", str(grpo_data / "model"), "--out", str(out), "--max-steps", "2",
            "--batch-size", "2", "--gguf", "none", "--python-share", "1", "--random-batches",
            "--no-call-share", "0.2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["data"]["python_call_share"] == 1.0
    assert report["data"]["refusal_share"] == round(1 / 9, 4)  # 4 calls, 4 answers, 1 refusal
    settings = json.loads((out / "checkpoint" / "tooldojo_train.json").read_text())["settings"]
    assert settings["group_by_length"] is False and settings["python_share"] == 1.0
    # 1 refusal of 5 decisions is the asked 0.2 already: nothing trained twice.
    assert settings["no_call_share"] == 0.2 and report["data"]["repeated_trajectories"] == 0
    assert report["training"]["tokens_per_s"] > 0


def test_python_prompts_lay_the_tools_out_in_more_than_one_way():
    """Lines of compact JSON or an indented JSON array, drawn per trajectory: every layout
    names every tool with its parameters, and a draw over many keys meets them all."""
    from tooldojo.train.python_calls import TOOL_LAYOUTS, python_prompt

    other = WEATHER.model_copy(update={"name": "get_forecast"})
    for layout in TOOL_LAYOUTS:
        prompt = python_prompt([WEATHER, other], "k", layout)
        for tool in (WEATHER, other):
            assert f'"name": "{tool.name}"' in prompt or f'"name":"{tool.name}"' in prompt
            assert all(p in prompt for p in WEATHER.parameters["properties"])
    assert python_prompt([WEATHER], "k", "array2").count("\n") > 5
    assert python_prompt([WEATHER], "k", "lines").count("\n") < python_prompt(
        [WEATHER], "k", "array2"
    ).count("\n")
    drawn = {python_prompt([WEATHER], f"key{i}") for i in range(60)}
    layouts = {
        name
        for name, render in TOOL_LAYOUTS.items()
        if any(render([WEATHER]) in prompt for prompt in drawn)
    }
    assert layouts == set(TOOL_LAYOUTS)
