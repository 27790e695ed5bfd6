"""How often the simulated server's answer is a valid result on the first try, per bound.

The simulated server (the InfTool "MCP server" agent) decodes each tool result under a
bounded response schema (:mod:`tooldojo.mcp.executors.response_schema`). A string that
reaches its length bound was closed by the grammar, not by the model; when it holds prose or a
runaway, the result is a failure and its trajectory fails the execution gate. In a
400-scenario run on the refined corpus that was the largest single cause of failed
trajectories (about 50 of 302). This replays recorded simulated calls (the tool, its
arguments) with the embedded model for each variant of the loosest string bound, in one run,
and counts valid results, failures by cause, tries and tokens.

Each call is replayed in a fresh episode (no earlier calls in the prompt), so a result is
judged on its own; the recorded run had the episode's history, which makes prompts longer.

    python bench/server_results.py runs/scale1/trajectories.jsonl --n 60 --chars 48,96

Measured 2026-11-26 (80 calls of the 400-scenario run, load 2-5): bound 48 gave 69/80 valid
(11 cut); bound 96 gave 70/80 (6 cut, 4 not JSON: above 64 characters the string's pattern
is dropped, see ``llm.llamacpp._plain_pattern``, and control characters get in), 10 % more
tokens. So the bound stays at 48: most cuts are at the tighter rungs of large schemas anyway.

Measured 2026-11-27 (100 calls of the issue-15 scale run, load 2-4, bound 48): 90/100 valid
(10 cut) before prose cut at the bound was ended at its last full sentence
(``simulated._end_at_sentence``), 92/100 (8 cut) after: the 135M model seldom ends a sentence
within 48 characters.

Measured 2026-11-27 16:05-16:16 UTC (40 calls whose result failed in the scale3 run,
``--failed-only --prose keep,drop``, load 2-4: the run itself held both cores): keeping
optional free-text fields, 28/40 valid (12 cut); leaving them out (the default now), 31/40
valid (7 cut, 2 junk: runaways such as ``john_john_john_john``), 3 % fewer generated tokens.

A valid result with a value that says nothing (``");"``, the execution gate's ``junk_result``)
counts as ``junk``. Measured 2026-11-27 (100 calls of the scale run, load 2-4): 85/100 valid,
9 junk, 5 cut, before bounded strings had to hold a letter or digit
(``response_schema._safe_string``); 92/100 valid, 1 junk, 6 cut after.

A valid result that reports a failure (``"status": "Failed"``, ``{"success": false}``) counts
as ``failure``: the execution gate fails it too. Measured 2026-11-28 00:29-00:39 UTC (40 calls
whose recorded result was such a failure or filler in the scale3 run, ``--made-up-only
--made-up accept,check --chars 48``, load 2-4: the loop held both cores): accepting them as
before, 21/40 valid (15 failure, 2 junk, 2 cut); re-asking the server once
(``simulated._made_up_failure``, the default now), 25/40 (11 failure), with 25 % more
generated tokens on these calls. In that run 88 of 2,361 trajectories failed on such a result
alone, so the retry saves about one trajectory in a hundred and fifty.

More tries do not rescue a call the model fails twice. Measured 2026-11-28 04:05-04:20 UTC
(40 calls whose simulated result failed in the scale3 run or in the loop's iteration 1,
``--failed-only --retries 1,3 --chars 48``, load 2-4: the loop was training): one re-ask (the
default) 29/40 valid, three re-asks 29/40 with 45 % more generated tokens. A retry that left
the invalid reply and its correction out of the prompt (the first prompt again, another seed;
tried in a variant of this script, not kept) gave 28/40 with one retry. What fails is the call,
not the conversation after it: the executor keeps one re-ask.

What does help is a smaller grammar for that re-ask. After a runaway or a string cut at its
bound, the retry is now decoded at the next rung of the ladder (fewer optional fields and
items; ``simulated.TIGHTEN_ON_RETRY``, ``--tighten off,on``). Measured 2026-11-28 (load 2-4,
the loop training beside it), on calls whose simulated result failed: the 30 of the loop's
iteration 1, 25/30 valid before, 27/30 after; 60 of iteration 1 and the scale3 run
(``--n 60 --seed 1``), 47/60 before (10 cut), 51/60 after (6 cut), with 12 % fewer generated
tokens.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path


def simulated_calls(
    paths: list[Path], n: int, seed: int, failed_only: bool = False, made_up_only: bool = False
) -> list[tuple]:
    """(tool, arguments) of ``n`` recorded calls whose result a model wrote (or failed to),
    drawn with a fixed seed; a tool with a response schema and one without alike.
    ``failed_only``: only the calls whose simulated result failed in the recording (no valid
    result, or one that the execution gate fails); ``made_up_only``: only the latter."""
    from tooldojo.jsonl import read_jsonl
    from tooldojo.model import Trajectory

    calls: list[tuple] = []
    for path in paths:
        for trajectory in read_jsonl(path, Trajectory):
            tools = {tool.name: tool for tool in trajectory.tools}
            pending = {}
            for message in trajectory.messages:
                for call in message.tool_calls or []:
                    pending[call.id] = call
                if message.role != "tool" or message.tool_call_id not in pending:
                    continue
                call = pending[message.tool_call_id]
                failed = message.is_error and "simulated" in (message.content or "")
                model_written = getattr(message, "origin", None) == "model"
                # a success the gate fails: it reports a failure, or holds filler
                invented = model_written and made_up(message.content or "")
                failed = invented if made_up_only else failed or invented
                simulated = failed or (model_written and not (failed_only or made_up_only))
                if simulated and call.name in tools:
                    calls.append((tools[call.name], call.arguments))
    random.Random(seed).shuffle(calls)
    return calls[:n]


def made_up(text: str) -> bool:
    """Whether a recorded simulated result, valid as JSON, is one the execution gate fails: it
    reports a failure or holds filler."""
    import json

    from tooldojo.mcp.executors.result_checks import invented

    try:
        value = json.loads(text)
    except ValueError:
        return False
    return invented(value) is not None


def cause(problem: str) -> str:
    """A failure's cause in a word: ``cut`` (a string closed at its bound), ``schema``,
    ``json``, ``budget``, ``failure`` (a made-up failure), ``junk`` or ``other``."""
    for word, pattern in (
        ("cut", r"was cut at"),
        ("schema", r"output schema"),
        ("json", r"not JSON"),
        ("budget", r"hit its budget|cannot answer"),
        ("failure", r"reports a failure"),
        ("junk", r"says nothing|over and over"),
    ):
        if re.search(pattern, problem):
            return word
    return "other"


LADDERS = {
    "default": None,
    # Fewer fields before shorter strings: the 135M server fills any string to its bound when
    # it writes prose, so a tighter string bound cuts more of them.
    "fields": (
        dict(string_chars=48, items=2, optional_properties=3),
        dict(string_chars=48, items=1, optional_properties=1, depth=3),
        dict(string_chars=32, items=1, optional_properties=0, depth=2, echo=3),
        dict(string_chars=16, items=1, optional_properties=0, depth=2, echo=3),
    ),
}
"""Rungs after the first (see ``response_schema.LADDER``): ``None`` keeps the code's own."""


async def replay(
    model, calls: list[tuple], chars: int, concurrency: int, retries: int | None = None
) -> dict:
    import anyio

    from tooldojo.llm.base import SamplingParams
    from tooldojo.mcp.episodes import Episode
    from tooldojo.mcp.executors.base import ToolExecutionError
    from tooldojo.mcp.executors.response_schema import LADDER
    from tooldojo.mcp.executors.result_checks import invented
    from tooldojo.mcp.executors.simulated import SimulatedExecutor

    # The server role's sampling in configs/selfplay.yaml (the scale run's config).
    sampling = SamplingParams(temperature=0.3, max_tokens=200, seed=0)
    executor = SimulatedExecutor(
        model, sampling=sampling, bounds=replace(LADDER[0], string_chars=chars)
    )
    if retries is not None:
        executor.max_retries = retries
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    generated_before = model.stats.generated_tokens
    prompt_before = model.stats.prompt_tokens
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(number: int, tool, arguments) -> None:
        async with limiter:
            try:
                outcome = await executor.execute(tool, arguments, Episode(id=f"replay-{number}"))
            except ToolExecutionError as error:
                kind = cause(str(error))
                outcomes[kind] += 1
                examples.setdefault(kind, str(error)[-160:])
            else:
                # valid, but the execution gate fails a made-up failure or filler
                found = invented(outcome.value)
                kind = found[0] if found else "valid"
                outcomes[kind] += 1
                if found:
                    examples.setdefault(kind, repr(found[1]))

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for number, (tool, arguments) in enumerate(calls):
            group.start_soon(one, number, tool, arguments)
    return {
        "seconds": time.perf_counter() - started,
        "outcomes": outcomes,
        "examples": examples,
        "generated": model.stats.generated_tokens - generated_before,
        "prompt": model.stats.prompt_tokens - prompt_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="trajectory JSONL files")
    parser.add_argument("--n", type=int, default=60, help="recorded calls to replay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chars", default="48,96", help="loosest string bounds to compare")
    parser.add_argument("--ladders", default="default", help=", ".join(LADDERS))
    parser.add_argument(
        "--prose",
        default="drop",
        help="optional free-text fields: drop (the code's default), keep; comma-separated",
    )
    parser.add_argument(
        "--failed-only", action="store_true", help="replay only calls that failed when recorded"
    )
    parser.add_argument(
        "--made-up-only",
        action="store_true",
        help="replay only calls whose recorded result reported a failure or held filler",
    )
    parser.add_argument(
        "--made-up",
        default="check",
        help="a result that reports a failure or holds filler: check (re-asked, the code's "
        "default), accept; comma-separated",
    )
    parser.add_argument(
        "--retries",
        default="own",
        help="re-asks after an invalid answer: own (the executor's default) or a number; "
        "comma-separated",
    )
    parser.add_argument(
        "--tighten",
        default="on",
        help="after a runaway or a cut string, retry at the next rung of the ladder: on (the "
        "code's default), off; comma-separated",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()

    import anyio

    from tooldojo.llm.llamacpp import LlamaCppChatModel

    calls = simulated_calls(
        options.paths, options.n, options.seed, options.failed_only, options.made_up_only
    )
    with_schema = sum(bool(tool.output_schema) for tool, _ in calls)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{len(calls)} recorded simulated calls ({with_schema} with a response schema)")
    model = LlamaCppChatModel(pool_size=2, n_threads=1, n_ctx=8192)
    baseline = None
    from tooldojo.mcp.executors import response_schema, simulated

    own_ladder = response_schema.LADDER
    own_check = simulated._made_up_failure
    variants = [
        (int(c), name, prose, check, retries, tighten)
        for c in options.chars.split(",")
        for name in options.ladders.split(",")
        for prose in options.prose.split(",")
        for check in options.made_up.split(",")
        for retries in options.retries.split(",")
        for tighten in options.tighten.split(",")
    ]
    try:
        for chars, ladder, prose, check, retries, tighten in variants:
            simulated.TIGHTEN_ON_RETRY = tighten == "on"
            response_schema.DROP_OPTIONAL_PROSE = prose == "drop"
            simulated._made_up_failure = own_check if check == "check" else lambda value: ""
            rungs = LADDERS[ladder]
            response_schema.LADDER = (
                own_ladder
                if rungs is None
                else (own_ladder[0], *(response_schema.Bounds(**r) for r in rungs))
            )
            tries = None if retries == "own" else int(retries)
            result = anyio.run(replay, model, calls, chars, options.concurrency, tries)
            valid = result["outcomes"]["valid"]
            baseline = valid if baseline is None else baseline
            print(
                f"string bound {chars:3d}, ladder {ladder}, prose {prose}, made-up {check}, "
                f"retries {retries}, tighten {tighten}: "
                f"valid {valid}/{len(calls)} "
                f"({valid / max(baseline, 1):.2f} x the first variant); "
                f"failures {dict(result['outcomes'] - Counter(valid=valid))}; "
                f"{result['generated'] / len(calls):.0f} generated and "
                f"{result['prompt'] / len(calls):.0f} prompt tokens per call, "
                f"{result['seconds']:.0f} s"
            )
            for kind, text in sorted(result["examples"].items()):
                print(f"    e.g. {kind}: ...{text}")
    finally:
        model.close()


if __name__ == "__main__":
    main()
