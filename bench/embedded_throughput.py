"""Throughput of the embedded model (SmolLM2-135M in llama.cpp) against this machine's limit.

The limit: SmolLM2-135M costs about 0.27 GFLOP per token (2 x parameters, lm_head included), so
the tokens/s a CPU can sustain is its fp32 GFLOP/s in this model's matmul shapes / 0.27. The
benchmark measures that first (torch, 1 and 2 threads, the faster counts), then in the same run:

* prompt tokens/s (distinct prompts, nothing cached), generated tokens/s for one stream and in
  aggregate (``--streams`` greedy streams at once), and the prefix-cache hit rate over 8 turns
  sharing the 12-tool prompt, each as a ratio to the limit, for every engine layout in
  ``--layouts`` (4-bit file weights vs f16), with llama.cpp's forward passes per step;
* tokens per tool of the hermes tool rendering, JSON Schema lines vs compact signatures;
* ``tooldojo call`` latency on the 12-tool example (target: 3 s);
* trajectories per minute of ``tooldojo synth`` on examples/specs;
* BFCL entries per minute of ``tooldojo eval bfcl`` on simple_python.

    python bench/embedded_throughput.py                      # everything
    python bench/embedded_throughput.py --skip-cli           # limit and engine figures only

The machine is shared: read the ratios, not the absolute figures, and the load average printed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(glob.glob(str(ROOT / "examples" / "specs" / "*")))
WEATHER = str(ROOT / "examples" / "specs" / "weather_finance.openai.json")
GFLOP_PER_TOKEN = 0.27
HIDDEN, KV, INTERMEDIATE, VOCAB, LAYERS = 576, 192, 1536, 49152, 30


def measure_limit(
    threads: int, tokens: int = 128, repeats: int = 3, dtype: str = "float32"
) -> float:
    """GFLOP/s of one forward pass's matmuls (30 layers plus lm_head) on ``tokens`` rows."""
    import torch

    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    layer = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV), (HIDDEN, HIDDEN)]
    layer += [(HIDDEN, INTERMEDIATE), (HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
    weights = [torch.randn(k, n, dtype=kind) for k, n in layer]
    head = torch.randn(HIDDEN, VOCAB, dtype=kind)
    inputs = {k: torch.randn(tokens, k, dtype=kind) for k in (HIDDEN, INTERMEDIATE)}
    flops = 2 * tokens * (LAYERS * sum(k * n for k, n in layer) + HIDDEN * VOCAB)
    best = 0.0
    for _ in range(repeats + 1):
        started = time.perf_counter()
        for _ in range(LAYERS):
            for weight in weights:
                inputs[weight.shape[0]] @ weight
        inputs[HIDDEN] @ head
        best = max(best, flops / (time.perf_counter() - started) / 1e9)
    return best


def tool_tokens(tokenizer) -> tuple[float, float]:
    """Mean tokens per tool: its JSON Schema line (the old rendering) vs compact signature."""
    from tooldojo.llm.codecs import compact_signature
    from tooldojo.specs import load_tools

    tools = load_tools(SPECS)
    old = [json.dumps(t.to_openai(), ensure_ascii=False, separators=(",", ":")) for t in tools]
    new = [compact_signature(t) for t in tools]
    count = len(tools)
    return (
        sum(len(tokenizer(line)) for line in old) / count,
        sum(len(tokenizer(line)) for line in new) / count,
    )


async def engine_figures(model, streams: int) -> dict[str, float]:
    import anyio

    from tooldojo.llm.base import SamplingParams
    from tooldojo.model import Message
    from tooldojo.specs import load_tools

    cpu: dict[str, float] = {}

    async def gather(requests) -> float:
        started, cpu_started = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as group:
            for messages, tools, sampling in requests:
                group.start_soon(
                    lambda m=messages, t=tools, s=sampling: model.complete(m, t, sampling=s)
                )
        cpu["last"] = time.process_time() - cpu_started
        return time.perf_counter() - started

    out: dict[str, float] = {}
    # Prompt processing: 4 distinct ~900-token prompts, one token each, nothing shared.
    words = Path(ROOT / "README.md").read_text(encoding="utf-8").split()
    prompts = [
        [
            Message(role="system", content=f"Document {i}."),
            Message(role="user", content=" ".join(words[i * 700 : i * 700 + 650])),
        ]
        for i in range(4)
    ]
    before = model.stats
    elapsed = await gather([(p, None, SamplingParams(max_tokens=1)) for p in prompts])
    computed = (model.stats.prompt_tokens - model.stats.reused_tokens) - (
        before.prompt_tokens - before.reused_tokens
    )
    out["prompt_tok_s"] = computed / elapsed
    out["prompt_tok_cpu_s"] = computed / cpu["last"]
    # Generation: one stream, then ``streams`` at once (short distinct prompts, 96 tokens each).
    story = [Message(role="user", content="Write a long story about a lighthouse keeper.")]
    sampling = SamplingParams(max_tokens=96)
    before = model.stats.generated_tokens
    elapsed = await gather([(story, None, sampling)])
    out["gen_single_tok_s"] = (model.stats.generated_tokens - before) / elapsed
    topics = ["a dragon", "the sea", "a robot", "a city", "winter", "a garden", "a train", "music"]
    rounds = range(streams // len(topics) + 1)
    topics = [f"{topic}, part {part + 1}" for part in rounds for topic in topics][:streams]
    before = model.stats
    elapsed = await gather(
        [
            ([Message(role="user", content=f"Write a long story about {t}.")], None, sampling)
            for t in topics
        ]
    )
    after = model.stats
    out["gen_aggregate_tok_s"] = (after.generated_tokens - before.generated_tokens) / elapsed
    out["gen_aggregate_tok_cpu_s"] = (after.generated_tokens - before.generated_tokens) / cpu[
        "last"
    ]
    out["runs_per_step"] = (after.id_runs - before.id_runs) / max(
        1, after.decode_calls - before.decode_calls
    )
    # Cache: 8 turns over the same 12 tools (the first computes the tools block).
    tools = load_tools([WEATHER])
    before = model.stats
    questions = [f"What is the weather in city number {i}?" for i in range(8)]
    await gather(
        [
            ([Message(role="user", content=q)], tools, SamplingParams(max_tokens=8))
            for q in questions[:1]
        ]
    )
    await gather(
        [
            ([Message(role="user", content=q)], tools, SamplingParams(max_tokens=8))
            for q in questions[1:]
        ]
    )
    after = model.stats
    out["hit_rate"] = (after.reused_tokens - before.reused_tokens) / max(
        1, after.prompt_tokens - before.prompt_tokens
    )
    return out


def run_cli(args: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess | None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tooldojo.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, None
    return time.perf_counter() - started, done


def count_lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8")) if path.is_file() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--layouts",
        default="2x1:f16:noflash,2x1:f16",
        help="ENGINESxTHREADS[:WEIGHTS][:noflash][:kvq8], comma-separated (file: the 4-bit GGUF "
        "as it is; f16, the default: converted to 16-bit floats; q8_0; noflash: flash attention "
        "off; kvq8: 8-bit KV cache)",
    )
    parser.add_argument("--streams", type=int, default=16, help="concurrent generation streams")
    parser.add_argument("--max-batch", type=int, default=8, help="sequences per engine")
    parser.add_argument("--concurrency", type=int, default=16, help="synth / eval in flight")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--synth-n", type=int, default=12)
    # Both default to what `tooldojo synth` runs when the config sets nothing (the roles'
    # defaults, llm.config.role_backend), so the synth figure is of the default path.
    parser.add_argument(
        "--synth-weights",
        default="default",
        help="weights of the embedded model for the synth run (auto: q8_0 on AMX kernels; "
        "default: the roles' default)",
    )
    parser.add_argument(
        "--synth-flash",
        default="default",
        help="flash attention in the synth run: on, off, default (the roles' default), or a "
        "comma-separated list such as on,off (one synth run each, same seed, so the rates "
        "compare in one run of the bench)",
    )
    parser.add_argument("--bfcl-limit", type=int, default=40)
    parser.add_argument("--cli-timeout", type=float, default=900)
    options = parser.parse_args()
    if not set(options.synth_flash.split(",")) <= {"on", "off", "default"}:
        parser.error(
            f"--synth-flash: on, off, default or a list of them, not {options.synth_flash!r}"
        )

    import anyio

    from tooldojo.llm.llamacpp import LlamaCppChatModel

    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    limits = {threads: measure_limit(threads) for threads in (1, 2)}
    limit_gflops = max(limits.values())
    limit = limit_gflops / GFLOP_PER_TOKEN
    for threads, gflops in limits.items():
        print(
            f"limit, torch fp32, {threads} thread(s): {gflops:6.1f} GFLOP/s = "
            f"{gflops / GFLOP_PER_TOKEN:5.0f} tok/s"
        )
    print(f"limit used below: {limit:.0f} tok/s")
    import torch

    if torch.cpu.get_capabilities().get("amx_bf16"):
        # Issue 14 defines the limit in fp32; on a CPU with AMX the hardware multiplies bf16
        # several times faster (torch uses it, llama.cpp does not), so say how far that is.
        bf16 = measure_limit(2, dtype="bfloat16") / GFLOP_PER_TOKEN
        print(f"limit, torch bf16 on AMX, 2 threads: {bf16:.0f} tok/s ({bf16 / limit:.1f} x fp32)")
    per_core = limits[1] / GFLOP_PER_TOKEN

    for layout in options.layouts.split(","):
        shape, *rest = layout.split(":")
        engines, threads = (int(part) for part in shape.split("x"))
        model = LlamaCppChatModel(
            pool_size=engines,
            n_threads=threads,
            max_batch=options.max_batch,
            weights=next((part for part in rest if part not in ("noflash", "kvq8")), "f16"),
            flash_attn="noflash" not in rest,
            kv_cache="q8_0" if "kvq8" in rest else "f16",
        )
        if layout == options.layouts.split(",")[0]:
            old, new = tool_tokens(model.tokenize)
            print(
                f"tokens per tool on examples/specs: JSON Schema {old:.0f} -> "
                f"compact {new:.0f} ({new / old:.2f}x)"
            )
        figures = anyio.run(engine_figures, model, options.streams)
        model.close()
        print(f"engines x threads = {layout} (load {os.getloadavg()[0]:.2f}):")
        for key in ("prompt_tok_s", "gen_single_tok_s", "gen_aggregate_tok_s"):
            print(f"  {key:20s} {figures[key]:7.1f} tok/s = {figures[key] / limit:.2f} x limit")
        print(
            f"  cache hit rate       {figures['hit_rate']:.2f} (8 turns sharing the 12-tool prompt)"
        )
        for key in ("prompt_tok_cpu_s", "gen_aggregate_tok_cpu_s"):
            print(
                f"  {key:20s} {figures[key]:7.1f} tok per CPU-second = "
                f"{figures[key] / per_core:.2f} x the 1-thread limit (load-independent)"
            )
        print(
            f"  aggregate: {options.streams} streams, max_batch {options.max_batch} per engine, "
            f"{figures['runs_per_step']:.2f} llama.cpp passes per step"
        )

    if options.skip_cli:
        return
    with tempfile.TemporaryDirectory() as cache:
        # Cold: nothing stored; warm: the next process reads the tools block's state from disk.
        os.environ["TOOLDOJO_CACHE"] = cache
        for state in ("cold", "warm"):
            elapsed, done = run_cli(
                ["call", "What is the weather in Oslo right now?", "--specs", WEATHER],
                options.cli_timeout,
            )
            ok = done is not None and done.returncode == 0
            print(
                f"tooldojo call, 12 tools, {state} prefix store: {elapsed:.1f} s "
                f"(target <= 3 s{'' if ok else ', FAILED'})"
            )
        del os.environ["TOOLDOJO_CACHE"]
    with tempfile.TemporaryDirectory() as folder:
        for flash in options.synth_flash.split(","):
            out = Path(folder) / f"synth-{flash}"
            config = Path(folder) / f"tooldojo-{flash}.yaml"  # every role on the embedded model
            settings: dict[str, object] = {"kind": "llamacpp"}
            if options.synth_weights != "default":
                settings["weights"] = options.synth_weights
            if flash != "default":
                settings["flash_attn"] = flash == "on"
            config.write_text(json.dumps({"backends": {"llamacpp": settings}}))  # JSON is YAML
            elapsed, done = run_cli(
                [
                    "synth",
                    "--specs",
                    *SPECS,
                    "--n",
                    str(options.synth_n),
                    "--concurrency",
                    str(options.concurrency),
                    "--config",
                    str(config),
                    "--out",
                    str(out),
                ],
                options.cli_timeout,
            )
            made = count_lines(out / "trajectories.jsonl")
            print(
                f"tooldojo synth --n {options.synth_n}, weights {options.synth_weights}, flash "
                f"attention {flash}: {made} trajectories in {elapsed:.0f} s = "
                f"{made / elapsed * 60:.1f}/min (documented before: 40 in 39 min 46 s = 1.0/min)"
            )
        report = Path(folder) / "bfcl.json"
        elapsed, done = run_cli(
            [
                "eval",
                "bfcl",
                "--categories",
                "simple_python",
                "--limit",
                str(options.bfcl_limit),
                "--concurrency",
                str(options.concurrency),
                # Answers stored by earlier runs would be reused, not evaluated (190 entries a
                # minute was read once, from the cache).
                "--no-cache",
                "--out",
                str(report),
            ],
            options.cli_timeout,
        )
        entries = options.bfcl_limit if done is not None and done.returncode == 0 else 0
        print(
            f"tooldojo eval bfcl simple_python --limit {options.bfcl_limit}: {elapsed:.0f} s = "
            f"{entries / elapsed * 60:.1f} entries/min (documented before: 1,240 in 1 h 49 min = "
            f"11.4/min){'' if entries else ' FAILED'}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
