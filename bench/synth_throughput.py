"""Synthesis engine throughput against a loopback OpenAI-compatible server with fixed latency.

The server (a child process) answers every chat completion after a fixed delay L with
role-appropriate content: a user request for the user simulator, a short text answer for
the assistant. At concurrency C the engine cannot exceed C / L model calls per second; the
goal is >= 0.9 of that bound, with memory flat as the number of episodes grows (each run
is a fresh process; its peak RSS is printed).

Two ratios are printed: calls per second over the whole run, which includes the ramp-up and
the drain at the end (the last episodes finish one by one, so at N=1,000 roughly a fifth of
the run has fewer than C episodes left), and the steady state in between: calls finished from
one latency after the first episode started until the last episode started.

    python bench/synth_throughput.py                 # C=256, L=1.0 s, N=1000 and 10000
    python bench/synth_throughput.py --episodes 500 --latency 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFICE = f"python:{ROOT / 'examples/tools/office.py'}:Office"


def serve(port: int, latency: float) -> None:
    """The loopback server: /v1/chat/completions after ``latency`` seconds."""
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def completions(request):
        body = await request.json()
        await asyncio.sleep(latency)
        if body.get("tools"):
            text = "All done, thank you."  # the assistant answers in text: episode ends
        else:  # the user simulator (requests and clarification answers)
            text = "Please book a meeting with Dana tomorrow at 10am about the budget."
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", backlog=4096, limit_concurrency=4096
    )


class CountingModel:
    """Counts model calls going through the real OpenAI-compatible backend, and records
    when each one ended (both roles append to one shared list)."""

    def __init__(self, inner, ends: list[float]):
        self.inner, self.name, self.calls, self.ends = inner, inner.name, 0, ends

    async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
        self.calls += 1
        try:
            return await self.inner.complete(
                messages, tools, sampling=sampling, constraint=constraint
            )
        finally:
            self.ends.append(time.perf_counter())


def run_engine(
    url: str, episodes: int, concurrency: int, latency: float, out: Path
) -> dict[str, float]:
    """One synthesis run in this process; returns calls, seconds and peak RSS."""
    import anyio

    from tooldojo.llm.base import aclose_models
    from tooldojo.llm.config import BackendConfig, load_model
    from tooldojo.synth import runner
    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared

    config = BackendConfig(
        kind="openai",
        model="loopback",
        base_urls=[url],
        max_in_flight=concurrency,
        timeout_s=60,
        max_retries=2,
    )
    ends: list[float] = []
    planned_rss: list[float] = []
    user = CountingModel(load_model(config), ends)
    assistant = CountingModel(load_model(config), ends)
    request = SynthRequest(
        specs=[],
        n=episodes,
        out=out,
        executor=OFFICE,
        values="schema",
        concurrency=concurrency,
        models={"user": user, "assistant": assistant},
        config=None,
        dedup=0.0,
        guidance="none",
        constrain=False,
        max_steps=2,
    )

    async def go():
        prepared = await prepare_run(request)
        planned_rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        started = time.perf_counter()
        summary = await run_prepared(prepared)
        seconds = time.perf_counter() - started
        await aclose_models([user.inner, assistant.inner])
        return summary, seconds

    # Steady state: after the first model answers came back (ramp-up) and before the last
    # episode started (ramp-down, when fewer than C episodes are left to run).
    starts: list[float] = []
    play = runner.run_episode

    async def timed_episode(scenario, env):
        starts.append(time.perf_counter())
        return await play(scenario, env)

    runner.run_episode = timed_episode
    cpu_before = time.process_time()
    try:
        summary, seconds = anyio.run(go)
    finally:
        runner.run_episode = play
    cpu = time.process_time() - cpu_before
    calls = user.calls + assistant.calls
    begin, end = starts[0] + latency, starts[-1]
    in_window = sum(begin <= moment <= end for moment in ends)
    return {
        "episodes": summary.total("finished"),
        "calls": calls,
        "seconds": seconds,
        "steady_rate": in_window / (end - begin) if end > begin else 0.0,
        "steady_seconds": end - begin,
        "cpu_ms_per_call": 1000 * cpu / max(calls, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "planned_rss_mb": planned_rss[0],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int)
    parser.add_argument("--engine", type=str)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--episodes", type=int, nargs="*", default=[1000, 10000])
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.latency)
        return
    if args.engine:
        url, episodes, out = args.engine.split("|")
        print(json.dumps(run_engine(url, int(episodes), args.concurrency, args.latency, Path(out))))
        return

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--latency", str(args.latency)]
    )
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        bound = args.concurrency / args.latency
        print(
            f"loopback server: latency L={args.latency} s, concurrency C={args.concurrency}: "
            f"bound C/L = {bound:.0f} model calls/s"
        )
        for episodes in args.episodes:
            with tempfile.TemporaryDirectory() as folder:
                spec = f"http://127.0.0.1:{port}/v1|{episodes}|{folder}/out"
                line = (
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--engine",
                            spec,
                            "--concurrency",
                            str(args.concurrency),
                            "--latency",
                            str(args.latency),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ, "OMP_NUM_THREADS": "1"},
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
            result = json.loads(line)
            rate = result["calls"] / result["seconds"]
            steady = result["steady_rate"]
            print(
                f"N={episodes}: {result['episodes']} episodes, {result['calls']} calls in "
                f"{result['seconds']:.1f} s = {rate:.0f} calls/s, achieved/bound "
                f"{rate / bound:.2f} over the whole run (ramp-up and drain included); "
                f"steady state ({result['steady_seconds']:.0f} s) {steady:.0f} calls/s, "
                f"achieved/bound {steady / bound:.2f} (goal >= 0.9); engine CPU "
                f"{result['cpu_ms_per_call']:.2f} ms/call (planning included); peak RSS "
                f"{result['peak_rss_mb']:.0f} MB "
                f"({result['planned_rss_mb']:.0f} MB once planned)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
