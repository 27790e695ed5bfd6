"""What the backends cost on top of the engines they wrap, measured in one process.

1. Embedded: tokens/s of ``LlamaCppChatModel.complete`` against raw ``llama_cpp.Llama`` on the
   same prompts (same rendered prompt string, same greedy settings, one thread); goal >= 0.95.
2. OpenAI-compatible: client-side CPU per request of ``OpenAIChatModel.complete`` against a
   loopback server that answers instantly, with 256 requests in flight; the baseline is the bare
   ``AsyncOpenAI`` client doing the same requests. Goal: <= 1 ms CPU per request of overhead.
   The server runs in a separate process so its CPU is not counted.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/llm_overhead.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time

from tooldojo.llm.base import SamplingParams
from tooldojo.model import Message

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "List three uses of copper.",
    "Describe a sunny day in Lisbon.",
]


def bench_embedded(max_tokens: int, rounds: int) -> None:
    from llama_cpp import Llama

    from tooldojo.llm.llamacpp import LlamaCppChatModel

    model = LlamaCppChatModel(n_threads=1)
    raw = Llama(model_path=str(model.model_path), n_ctx=4096, n_threads=1, verbose=False)
    prompts = [model.render_prompt([Message(role="user", content=p)], None) for p in PROMPTS]
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    eos = model._formatter.eos_token

    def raw_run() -> tuple[int, float]:
        tokens, started = 0, time.perf_counter()
        for prompt in prompts:
            out = raw.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=[eos])
            tokens += out["usage"]["completion_tokens"]
        return tokens, time.perf_counter() - started

    async def ours_run() -> tuple[int, float]:
        tokens, started = 0, time.perf_counter()
        for text in PROMPTS:
            out = await model.complete([Message(role="user", content=text)], sampling=sampling)
            tokens += out.usage.completion_tokens
        return tokens, time.perf_counter() - started

    raw_rates, our_rates = [], []
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        tokens, seconds = raw_run()
        raw_rates.append(tokens / seconds)
        tokens, seconds = asyncio.run(ours_run())
        our_rates.append(tokens / seconds)
    raw_best, ours_best = max(raw_rates), max(our_rates)
    print(f"embedded: raw llama_cpp {raw_best:.1f} tok/s, LlamaCppChatModel {ours_best:.1f} tok/s")
    print(f"embedded ratio (ours / raw, goal >= 0.95): {ours_best / raw_best:.3f}")


def _serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = (
        b'{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",'
        b'"function":{"name":"f","arguments":"{\\"a\\": 1}"}}]},"finish_reason":"tool_calls"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    )

    async def chat(request):
        await request.body()
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", backlog=4096)


def bench_openai(requests: int, in_flight: int) -> None:
    from openai import AsyncOpenAI

    from tooldojo.llm.openai_compat import OpenAIChatModel
    from tooldojo.model import Tool

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "loopback server did not start"
            time.sleep(0.05)
    tool = Tool(name="f", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})
    messages = [Message(role="user", content="call f")]

    async def raw_run() -> float:
        client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        limit = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with limit:
                await client.chat.completions.create(
                    model="m",
                    messages=[m.to_openai() for m in messages],
                    tools=[tool.to_openai()],
                    temperature=0.0,
                    top_p=1.0,
                    max_tokens=512,
                )

        started = time.process_time()
        await asyncio.gather(*(one() for _ in range(requests)))
        cpu = time.process_time() - started
        await client.close()
        return cpu

    async def ours_run() -> float:
        model = OpenAIChatModel("m", [url], max_in_flight=in_flight)
        started = time.process_time()
        results = await asyncio.gather(*(model.complete(messages, [tool]) for _ in range(requests)))
        cpu = time.process_time() - started
        await model.aclose()
        assert all(r.ok for r in results), next(r.error for r in results if not r.ok)
        return cpu

    asyncio.run(raw_run())  # warm-up: imports, connection pool
    raw_cpu = min(asyncio.run(raw_run()) for _ in range(2))
    ours_cpu = min(asyncio.run(ours_run()) for _ in range(2))
    server.terminate()
    per_raw = raw_cpu / requests * 1000
    per_ours = ours_cpu / requests * 1000
    print(f"openai: {requests} requests, {in_flight} in flight (client CPU only)")
    print(f"openai: bare AsyncOpenAI {per_raw:.3f} ms CPU/request, OpenAIChatModel {per_ours:.3f}")
    print(f"openai overhead per request (goal <= 1 ms): {per_ours - per_raw:.3f} ms CPU")
    print(f"openai ratio (ours / bare SDK CPU): {ours_cpu / raw_cpu:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and requests")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bench_embedded(max_tokens=32 if args.quick else 128, rounds=2 if args.quick else 3)
    bench_openai(requests=512 if args.quick else 2048, in_flight=256)


if __name__ == "__main__":
    main()
