"""Flash attention on or off, by context length: prompt and batched-generation speed of the
embedded model on this CPU, both settings in one run.

Why: llama.cpp's CPU flash-attention kernel walks the KV cache one query row and one position
at a time, while the plain path multiplies whole matrices; which wins depends on the CPU and
on how long the contexts are. Synthesis decodes many streams whose prompts hold a tool schema
and the conversation so far (1,000-3,000 tokens), where generation reads every stream's whole
KV cache at each step. The engine's default was chosen on a machine with AVX-512 and
1,575-token prompts (``bench/embedded_throughput.py``, docs/llm.md); this measures the choice
again where it runs.

Each stream gets its own copy of a prompt of ``--contexts`` tokens (the tools block of
examples/specs, repeated as needed), one KV stream per sequence as the engine keeps them, then
``--steps`` generation passes decode one token for every stream. Settings alternate within
each round, so a load that comes and goes hits both.

    OMP_NUM_THREADS=1 .venv/bin/python bench/flash_attention.py --contexts 300,1400,2400 --streams 8
        [--weights q8_0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def prompt_tokens(model, count: int) -> list[int]:
    """``count`` tokens of the 12-tool system prompt of examples/specs, repeated as needed."""
    from tooldojo.llm.codecs import HermesCodec
    from tooldojo.specs import load_tools

    tools = load_tools([str(ROOT / "examples" / "specs" / "weather_finance.openai.json")])
    text = HermesCodec().render(tools)
    tokens = model.tokenize(text.encode(), True, True)
    while len(tokens) < count:
        tokens += tokens
    return tokens[:count]


def measure(model, tokens: list[int], streams: int, flash: bool, steps: int) -> tuple[float, float]:
    """(prompt tokens/s of the first stream, generated tokens/s over all streams)."""
    import llama_cpp
    from llama_cpp._internals import LlamaContext

    params = llama_cpp.llama_context_default_params()
    per_stream = 256 * ((len(tokens) + steps) // 256 + 1)
    params.n_ctx = streams * per_stream
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = streams
    params.kv_unified = False  # as the engine: one KV stream per sequence
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if flash
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.n_threads = params.n_threads_batch = 1
    context = LlamaContext(model=model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    try:
        prompt_s = 0.0
        for stream in range(streams):
            started = time.perf_counter()
            for start in range(0, len(tokens), 512):
                chunk = tokens[start : start + 512]
                for i, token in enumerate(chunk):
                    batch.token[i], batch.pos[i] = token, start + i
                    batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, stream, 0
                batch.n_tokens = len(chunk)
                if llama_cpp.llama_decode(context.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed on the prompt")
            if stream == 0:
                prompt_s = time.perf_counter() - started
        started = time.perf_counter()
        for step in range(steps):
            for stream in range(streams):
                batch.token[stream], batch.pos[stream] = tokens[step], len(tokens) + step
                batch.n_seq_id[stream], batch.seq_id[stream][0] = 1, stream
                batch.logits[stream] = 1
            batch.n_tokens = streams
            if llama_cpp.llama_decode(context.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed on a generation pass")
        generation_s = time.perf_counter() - started
    finally:
        llama_cpp.llama_batch_free(batch)
        context.close()
    return len(tokens) / prompt_s, streams * steps / generation_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", default="300,1400,2400", help="prompt tokens per stream")
    parser.add_argument("--streams", type=int, default=8, help="sequences per pass")
    parser.add_argument("--steps", type=int, default=12, help="generation passes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--weights", default="f16", help="the embedded model's weights: f16, q8_0, bf16 or file"
    )
    options = parser.parse_args()

    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp._logger import set_verbose

    from tooldojo.llm.embedded import embedded_gguf_path
    from tooldojo.llm.llamacpp import weights_file

    set_verbose(False)
    llama_cpp.llama_backend_init()
    path = weights_file(embedded_gguf_path(), options.weights)
    model = LlamaModel(
        path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}; one thread; {path.name}")
    for count in (int(part) for part in options.contexts.split(",")):
        tokens = prompt_tokens(model, count)
        figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(options.rounds):
            for flash in (True, False):
                figures[flash].append(measure(model, tokens, options.streams, flash, options.steps))
        best = {
            flash: (max(p for p, _ in runs), max(g for _, g in runs))
            for flash, runs in figures.items()
        }
        (prompt_on, gen_on), (prompt_off, gen_off) = best[True], best[False]
        print(
            f"context {count:5d}, {options.streams} streams: prompt {prompt_on:5.0f} tok/s with "
            f"flash attention, {prompt_off:5.0f} without ({prompt_off / prompt_on:.2f} x); "
            f"generation {gen_on:5.1f} tok/s with, {gen_off:5.1f} without "
            f"({gen_off / gen_on:.2f} x)  [best of {options.rounds} rounds; "
            f"load {os.getloadavg()[0]:.2f}]"
        )


if __name__ == "__main__":
    main()
