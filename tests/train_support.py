"""Builders shared by the training tests: a tiny random Llama and a small verified data set."""

from __future__ import annotations

from pathlib import Path

from tooldojo import Label, LabelCall, Message, Tool, ToolCall, Trajectory, append_jsonl

WEATHER = Tool(
    name="get_current_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
)


def weather_trajectory(index: int, city: str, unit: str = "celsius") -> Trajectory:
    call = ToolCall(id=f"c{index}", name=WEATHER.name, arguments={"location": city, "unit": unit})
    return Trajectory(
        id=f"t{index}",
        category="single",
        tools=[WEATHER],
        messages=[
            Message(role="user", content=f"What's the weather in {city} in {unit}?"),
            Message(role="assistant", tool_calls=[call]),
            Message(
                role="tool",
                tool_call_id=call.id,
                name=WEATHER.name,
                content='{"temperature": 18, "conditions": "cloudy"}',
            ),
            Message(role="assistant", content=f"It is 18 degrees and cloudy in {city}."),
        ],
        labels=[
            Label(
                calls=[
                    LabelCall(name=WEATHER.name, arguments={"location": [city], "unit": [unit, ""]})
                ]
            ),
            Label(kind="text"),
        ],
        passed=True,
    )


def write_verified(path: Path, cities: list[str]) -> list[Trajectory]:
    """A verified.jsonl with one passed trajectory per city and one rejected one."""
    rows = [weather_trajectory(i, city) for i, city in enumerate(cities)]
    rejected = weather_trajectory(99, "Nowhere").model_copy(update={"passed": False})
    append_jsonl(path, [*rows, rejected])
    return rows


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_tokenizer(corpus: list[str]):
    """A byte-level BPE with a few hundred tokens, trained here on ``corpus``, ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_model(directory: Path, corpus: list[str], *, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights and a tokenizer trained locally (offline, fast)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def corpus_for(trajectories: list[Trajectory]) -> list[str]:
    """Text the tiny tokenizer is trained on: the rendered conversations themselves."""
    from tooldojo.llm._shared import render_chat
    from tooldojo.llm.codecs import get_codec

    codec = get_codec("hermes")
    texts = []
    for trajectory in trajectories:
        for turn in render_chat(trajectory.messages, trajectory.tools, codec):
            texts.append(f"<|im_start|>{turn['role']}\n{turn['content']}<|im_end|>\n")
    return texts * 4
