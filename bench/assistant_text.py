"""How often the embedded assistant writes a text step that passes the turn checks.

A text step is a final answer after tool results, a clarifying question, or a refusal. In
synthesis the assistant gets ``text_attempts`` tries at each (``AssistantAgent.step`` under
label guidance); an episode whose text step fails every try fails the ``turns`` gate, after
all its other turns were paid for. This replays recorded text steps: for every assistant text
message of the given trajectory files (the label it answered, the conversation before it and
the tools offered), it asks the agent again with the embedded model and counts, per label
kind, the steps the model answered acceptably, the tries that took and the tokens spent.
Variants of the sampling run on the same steps in one run, so their figures compare directly.

    python bench/assistant_text.py runs/x/verified.jsonl --n 48
    python bench/assistant_text.py A.jsonl B.jsonl --variants none,repeat
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.user_requests

VARIANTS = {
    "none": {"repeat_penalty": 1.0},
    "repeat": {},
    "frequency": {"frequency_penalty": 0.4},
    "full": {"focused_answers": False},
}
"""Sampling of the assistant role: ``none`` sets no penalty (so the agent adds none),
``repeat`` leaves it to the agent (its repetition penalty), ``frequency`` sets the user
role's frequency penalty instead. ``full`` is ``repeat`` with final answers written from the
whole conversation and tool list rather than from the request and results alone
(``assistant.answer_view``)."""


def text_steps(paths: list[Path], n: int, seed: int, kinds: str = "") -> list[tuple]:
    """(messages before, label, tools) of recorded assistant text steps, ``n`` drawn evenly
    over the label kinds (those in comma-separated ``kinds`` when given) with a fixed seed."""
    from tooldojo.jsonl import read_jsonl
    from tooldojo.model import Trajectory

    by_kind: dict[str, list[tuple]] = {}
    for path in paths:
        for trajectory in read_jsonl(path, Trajectory):
            index = -1
            for position, message in enumerate(trajectory.messages):
                if message.role != "assistant":
                    continue
                index += 1
                label = trajectory.labels[index] if index < len(trajectory.labels) else None
                if label is None or label.kind == "call" or message.tool_calls:
                    continue
                if kinds and label.kind not in kinds.split(","):
                    continue
                before = trajectory.messages[:position]
                by_kind.setdefault(label.kind, []).append((before, label, trajectory.tools))
    rng = random.Random(seed)
    drawn: list[tuple] = []
    kinds = sorted(by_kind)
    for kind in kinds:
        rng.shuffle(by_kind[kind])
    while len(drawn) < n and any(by_kind.values()):
        for kind in kinds:
            if by_kind[kind] and len(drawn) < n:
                drawn.append(by_kind[kind].pop())
    return drawn


async def replay(model, steps: list[tuple], variant: dict, concurrency: int) -> dict:
    import anyio

    from tooldojo.agents.assistant import AssistantAgent, answer_problems
    from tooldojo.llm.base import SamplingParams

    settings = dict(variant)
    focused = settings.pop("focused_answers", True)
    sampling = SamplingParams(temperature=0.0, max_tokens=384, **settings)
    agent = AssistantAgent(model, sampling=sampling, guidance="label", focused_answers=focused)
    answers: list[tuple[int, str, str, list[str]]] = []  # (step, kind, text, problems)
    from bench.user_requests import made_up  # the turns gate's measure, counted on passes

    words = [0, 0]  # made-up, all: over the passing answers
    passed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    generated_before = model.stats.generated_tokens
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(number: int, before, label, tools) -> None:
        async with limiter:
            completion = await agent.step(before, tools, seed=number, label=label)
        total[label.kind] += 1
        found = answer_problems(completion, label, before, tools)  # what the agent retries
        answers.append((number, label.kind, completion.text.strip(), found))
        if found:
            problems.update(problem.split(":")[0] for problem in found)
        else:
            passed[label.kind] += 1
            allowed = " ".join(m.content or "" for m in before) + " ".join(
                f"{t.name} {t.description}" for t in tools
            )
            bad, count = made_up(completion.text, allowed)
            words[0] += bad
            words[1] += count

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for number, (before, label, tools) in enumerate(steps):
            group.start_soon(one, number, before, label, tools)
    return {
        "seconds": time.perf_counter() - started,
        "passed": passed,
        "total": total,
        "problems": problems,
        "tries": dict(agent.stats.counts),
        "tokens": model.stats.generated_tokens - generated_before,  # every try's
        "made_up": words[0] / words[1] if words[1] else None,
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="trajectory JSONL files")
    parser.add_argument("--n", type=int, default=48, help="text steps to replay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="none,repeat,frequency")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kinds", default="", help="only these label kinds (text,clarify,...)")
    parser.add_argument("--show", action="store_true", help="print every answer, to read")
    options = parser.parse_args()

    import anyio

    from tooldojo.llm.llamacpp import LlamaCppChatModel

    steps = text_steps(options.paths, options.n, options.seed, options.kinds)
    kinds = Counter(label.kind for _, label, _ in steps)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{len(steps)} recorded text steps: {dict(kinds)}")
    model = LlamaCppChatModel(pool_size=2, n_threads=1, n_ctx=8192)
    try:
        for name in options.variants.split(","):
            result = anyio.run(replay, model, steps, VARIANTS[name], options.concurrency)
            ok = sum(result["passed"].values())
            per_kind = ", ".join(
                f"{kind} {result['passed'][kind]}/{count}" for kind, count in sorted(kinds.items())
            )
            print(
                f"{name:13s} passed {ok}/{len(steps)} ({per_kind}); "
                f"{result['tokens'] / len(steps):.0f} tokens/step, "
                f"{result['tokens'] / max(ok, 1):.0f} tokens per passed step, "
                f"{result['seconds']:.0f} s; made-up words {result['made_up']}; "
                f"tries {result['tries']}"
            )
            print(f"{'':13s} problems: {dict(result['problems'].most_common(6))}")
            if options.show:
                for number, kind, text, found in sorted(result["answers"]):
                    verdict = "FAIL " + ",".join(found) if found else "ok"
                    print(f"  {number:3d} [{kind}] {verdict}: {text}")
    finally:
        model.close()


if __name__ == "__main__":
    main()
