"""Does a model answer in Python calls whatever the layout of the tool list? Synthetic data only.

A system prompt asking for Python calls (``[f(a=1)]``, our own wordings in
:mod:`tooldojo.train.python_calls`) lists the tools in one of several layouts: one compact JSON
object per line, or an indented JSON array. A model trained on one layout may continue an
unfamiliar one, copying schemas instead of calling. For the first call turn of recorded
trajectories the model was *not* trained on (``--trained-on`` leaves its training data out),
the model answers the same request once per layout, greedily, with no native tool prompt and no
grammar; the answer is read back with the codec that reads Python calls at evaluation.

Per layout it prints how many answers are a Python call list at all (``calls``), how many
call exactly the labelled tools (``right tools``, as a multiset of names), and how many start
by copying the tool list (``copied``: the answer opens with ``[`` then ``{`` or ``"name"``).

    python bench/python_layouts.py runs/selfplay3/iter-002/heldout.jsonl \
        --trained-on runs/selfplay3/iter-000/verified.jsonl --model model.gguf --n 30

Measured 2026-11-27 (load 3, BFCL answers computing beside it) on the final model of the
three-iteration run ``runs/selfplay3``, trained when every Python-call prompt listed tools one
JSON line each, over 30 first call turns of that run's held-out split: lines: calls 13/30,
right tools 3/30, copied the tool list 0/30; indented array (2): 9/30, 0/30, copied 6/30;
indented array (4): 10/30, 1/30, copied 3/30. Hence the layouts are now drawn per trajectory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path

COPY_START = re.compile(r'^\s*\[\s*(\{|"name")')


def first_call_turns(paths: list[Path], trained: set[str], n: int) -> list:
    """(request messages, tools, labelled names, key) of up to ``n`` first turns whose label is
    a call, from trajectories not in ``trained``, one per distinct request."""
    from tooldojo.jsonl import read_jsonl
    from tooldojo.model import Trajectory

    found, seen = [], set()
    for path in paths:
        for trajectory in read_jsonl(path, Trajectory):
            messages = trajectory.messages
            if trajectory.id in trained or len(messages) < 2 or not trajectory.labels:
                continue
            label = trajectory.labels[0]
            if label.kind != "call" or not label.calls or messages[1].role != "user":
                continue
            if messages[0].role != "system" or messages[1].content in seen:
                continue
            seen.add(messages[1].content)
            names = sorted(call.name for call in label.calls)
            found.append((messages[:2], trajectory.tools, names, trajectory.id))
    return found[:n]


async def answer_all(model, turns: list, concurrency: int) -> dict[str, Counter]:
    from tooldojo.llm.base import SamplingParams
    from tooldojo.llm.codecs import get_codec
    from tooldojo.model import Message
    from tooldojo.train.python_calls import TOOL_LAYOUTS, python_prompt

    pythonic = get_codec("pythonic")
    limiter = asyncio.Semaphore(concurrency)
    outcomes: dict[str, Counter] = {layout: Counter() for layout in TOOL_LAYOUTS}

    async def one(messages: list, tools: list, names: list[str], key: str, layout: str) -> None:
        system = f"{messages[0].content}\n\n{python_prompt(tools, key, layout)}".strip()
        prompt = [Message(role="system", content=system), messages[1]]
        async with limiter:
            completion = await model.complete(
                prompt, [], sampling=SamplingParams(temperature=0.0, max_tokens=128)
            )
        text = completion.text or ""
        try:
            calls = pythonic.parse(text)
        except Exception:  # a malformed call list: not a call answer
            calls = []
        counts = outcomes[layout]
        counts["answers"] += 1
        counts["calls"] += bool(calls)
        counts["right tools"] += sorted(c.name for c in calls) == names
        counts["copied"] += bool(COPY_START.match(text))

    await asyncio.gather(
        *(one(*turn, layout) for turn in turns for layout in TOOL_LAYOUTS),
    )
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trajectories", type=Path, nargs="+", help="verified/heldout JSONL files")
    parser.add_argument("--model", required=True, help="a GGUF file, or 'embedded'")
    parser.add_argument("--trained-on", type=Path, action="append", default=[])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()

    from tooldojo.jsonl import read_jsonl
    from tooldojo.llm.llamacpp import LlamaCppChatModel
    from tooldojo.model import Trajectory

    trained = {t.id for p in options.trained_on for t in read_jsonl(p, Trajectory) if t.passed}
    turns = first_call_turns(options.trajectories, trained, options.n)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{len(turns)} first call turns not trained on")
    path = None if options.model == "embedded" else options.model
    model = LlamaCppChatModel(model_path=path, pool_size=2, n_threads=1, n_ctx=8192)
    started = time.perf_counter()
    try:
        outcomes = asyncio.run(answer_all(model, turns, options.concurrency))
    finally:
        model.close()
    print(f"model {options.model}, {time.perf_counter() - started:.0f} s")
    for layout, counts in outcomes.items():
        total = counts["answers"]
        print(
            f"  {layout:7s} calls {counts['calls']}/{total}, right tools "
            f"{counts['right tools']}/{total}, copied the tool list {counts['copied']}/{total}"
        )


if __name__ == "__main__":
    main()
