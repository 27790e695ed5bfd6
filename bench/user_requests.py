"""The user simulator's yield: how many planned opening requests the model itself writes.

Runs only ``UserSimulator.request(scenario, 0, rng)`` for planned scenarios with the embedded
model, set up as ``configs/selfplay.yaml`` sets up the user role (llama.cpp, pool_size 2,
n_threads 1, temperature 0.8, max_tokens 160), with ``--concurrency`` requests in flight, and
prints: accepted by the model (k/n, per category), templated, dropped, attempts per accepted
request, generated tokens per scenario, wall time, requests per minute, the problems of the
failed tries by reason, and the share of made-up words in the accepted requests (words in no
English word list nor in the scenario, counted as :mod:`tooldojo.verify.words` counts them:
the request checks let one a message through, so more yield cannot come from worse text
unseen).

The template cap defaults to 0 here, so every scenario the model cannot write counts as a
drop (in synthesis the first 10 % of such scenarios would be templated instead). The persona
and style are drawn as ``synth.episode.run_episode`` draws them (same per-episode rng), so a
seed gives the same prompts as a synthesis run of the same scenarios.

    python bench/user_requests.py --n 64 --seed 0 --dump /tmp/user_requests.jsonl

``--dump`` writes, per scenario, every completion the model returned (text, whether it ran
under the values grammar, finish reason) for reading why requests fail; the product never
records failed texts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIOS = [Path(f"/work/runs/selfplay/iter-{i:03d}/scenarios.jsonl") for i in range(3)]
CONFIG = ROOT / "configs" / "selfplay.yaml"

_SCENARIO: contextvars.ContextVar[str] = contextvars.ContextVar("scenario", default="")


class Recording:
    """A ``ChatModel`` that forwards to ``model`` and keeps every completion per scenario."""

    def __init__(self, model: Any):
        self.model = model
        self.name = model.name
        self.calls: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
        completion = await self.model.complete(
            messages, tools, sampling=sampling, constraint=constraint
        )
        self.calls[_SCENARIO.get()].append(
            {
                "constrained": constraint is not None,
                "text": completion.text,
                "finish": completion.finish_reason,
                "error": completion.error,
                "tokens": completion.usage.completion_tokens,
            }
        )
        return completion


def load_scenarios(paths: list[Path]) -> list[Any]:
    from tooldojo.model import Scenario

    out = []
    for path in paths:
        if not path.is_file():
            sys.exit(f"{path}: scenarios file not found")
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    out.append(Scenario.model_validate_json(line))
                except ValueError as error:
                    sys.exit(f"{path}:{number}: not a scenario ({str(error).splitlines()[0]})")
    return out


def stratified(scenarios: list[Any], n: int, seed: int) -> list[Any]:
    """``n`` scenarios drawn round-robin over categories (each category shuffled by ``seed``)."""
    rng = random.Random(seed)
    by_category: dict[str, list[Any]] = defaultdict(list)
    for scenario in sorted(scenarios, key=lambda s: s.id):
        by_category[scenario.category].append(scenario)
    for items in by_category.values():
        rng.shuffle(items)
    picked: list[Any] = []
    while len(picked) < n and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(picked) < n:
                picked.append(by_category[category].pop())
    return picked


def made_up(text: str, allowed: str) -> tuple[int, int]:
    """(made-up words, words) of ``text``, counted as the gates count them
    (:mod:`tooldojo.verify.words`). The request checks fail a message only from two of them
    ("firewman", "thetodaysgodsn"), so a sampling change that swapped loops for one invented
    word a message would pass them; this counts every one. Words of ``allowed`` (the planned
    values, the persona) count as known."""
    from tooldojo.verify.words import allowed_words, made_up_words

    invented, count = made_up_words(text, allowed_words(allowed))
    return len(invented), count


def reason_of(problem: str) -> str:
    """A problem line without its specifics ("missing 42, Lisbon" -> "missing")."""
    for prefix in (
        "missing",
        "mentions withheld",
        "names the tool",
        "constrained answer",
        "a planned value",
    ):
        if problem.startswith(prefix):
            return prefix
    if re.match(r"lists .* as fields", problem):
        return "lists fields"
    return problem


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tooldojo.agents.user import TemplateCapReached, UserSimulator
    from tooldojo.llm.config import load_config, load_role_models
    from tooldojo.synth.episode import episode_start

    scenarios = stratified(load_scenarios(args.scenarios), args.n, args.seed)
    config = load_config(args.config)
    model = load_role_models(config, ("user",))["user"]
    role = config.role("user")
    recording = Recording(model)
    sampling = role.sampling
    penalties = {
        name: getattr(args, name)
        for name in ("repeat_penalty", "frequency_penalty", "presence_penalty")
        if getattr(args, name) is not None
    }
    if penalties:  # set explicitly: the simulator then adds no penalty of its own
        sampling = sampling.model_copy(update=penalties)
    kwargs = {"parallel": args.parallel} if args.parallel else {}
    user = UserSimulator(recording, sampling=sampling, template_cap=args.template_cap, **kwargs)
    gate = asyncio.Semaphore(args.concurrency)
    rows: list[dict[str, Any]] = []

    async def one(scenario: Any) -> None:
        async with gate:
            _SCENARIO.set(scenario.id)
            # As run_episode: the same per-episode rng draws the persona, then the request.
            rng, scenario = episode_start(scenario)
            began = time.perf_counter()
            try:
                text = await user.request(scenario, 0, rng)
                row = {
                    "source": text.source,
                    "constrained": text.constrained,
                    "attempts": text.attempts,
                    "tokens": text.usage.completion_tokens,
                    "problems": text.problems,
                    "text": text.text,
                }
            except TemplateCapReached as error:
                row = {
                    "source": "dropped",
                    "problems": getattr(error, "problems", []),  # absent before 2026-11-26
                    "error": str(error),
                }
            row |= {"id": scenario.id, "category": scenario.category, "style": scenario.style}
            if row["source"] == "model":
                allowed = json.dumps(scenario.metadata.get("asks", [])) + scenario.persona
                row["made_up"], row["words"] = made_up(row["text"], allowed)
            row["seconds"] = round(time.perf_counter() - began, 2)
            calls = recording.calls[scenario.id]
            row["calls"] = calls
            row["tokens"] = sum(c["tokens"] for c in calls)
            rows.append(row)

    load_before = os.getloadavg()
    stats = getattr(model, "stats", None)
    generated_before = stats.generated_tokens if stats is not None else 0
    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in scenarios))
    wall = time.perf_counter() - started
    # Every token the engines decoded, cancelled tries included (usage counts finished ones).
    engine_tokens = model.stats.generated_tokens - generated_before if stats is not None else None
    close = getattr(model, "close", None)
    if close is not None:
        close()
    summary = summarize(rows, wall, args, load_before, os.getloadavg())
    if engine_tokens is not None:
        summary["engine_tokens_per_scenario"] = round(engine_tokens / len(rows), 1)
        accepted = summary["accepted_by_model"]
        summary["engine_tokens_per_accepted"] = (
            round(engine_tokens / accepted, 1) if accepted else None
        )
    return summary


def summarize(
    rows: list[dict[str, Any]],
    wall: float,
    args: argparse.Namespace,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> dict[str, Any]:
    n = len(rows)
    model_rows = [r for r in rows if r["source"] == "model"]
    per_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        per_category[row["category"]][1] += 1
        per_category[row["category"]][0] += row["source"] == "model"
    problems: Counter[str] = Counter()
    for row in rows:
        for problem in row.get("problems", []):
            problems[reason_of(problem)] += 1
    tokens = sum(r["tokens"] for r in rows)
    calls = sum(len(r["calls"]) for r in rows)
    summary = {
        "scenarios": n,
        "seed": args.seed,
        "template_cap": args.template_cap,
        "overrides": {
            k: v
            for k, v in vars(args).items()
            if k in ("parallel", "repeat_penalty", "frequency_penalty", "presence_penalty")
            and v is not None
        },
        "accepted_by_model": len(model_rows),
        "accepted_share": round(len(model_rows) / n, 3) if n else 0.0,
        "constrained": sum(1 for r in model_rows if r.get("constrained")),
        "templated": sum(1 for r in rows if r["source"] == "template"),
        "dropped": sum(1 for r in rows if r["source"] == "dropped"),
        "per_category": {c: f"{k}/{t}" for c, (k, t) in sorted(per_category.items())},
        "attempts_per_accepted": round(sum(r["attempts"] for r in model_rows) / len(model_rows), 2)
        if model_rows
        else None,
        "completions": calls,
        "generated_tokens_per_scenario": round(tokens / n, 1) if n else 0.0,
        "generated_tokens_per_accepted": round(tokens / len(model_rows), 1) if model_rows else None,
        "wall_s": round(wall, 1),
        "requests_per_min": round(n / wall * 60, 1) if wall else 0.0,
        "accepted_per_min": round(len(model_rows) / wall * 60, 1) if wall else 0.0,
        "mean_request_s": round(sum(r["seconds"] for r in rows) / n, 1) if n else 0.0,
        "made_up_word_share": round(
            sum(r.get("made_up", 0) for r in model_rows)
            / max(1, sum(r.get("words", 0) for r in model_rows)),
            3,
        )
        if any("words" in r for r in model_rows)
        else None,
        "problems_by_reason": dict(problems.most_common()),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as handle:
            for row in sorted(rows, key=lambda r: r["id"]):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=Path, nargs="+", default=DEFAULT_SCENARIOS)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--template-cap", type=float, default=0.0)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--parallel", type=int, default=None, help="tries decoded at once")
    for name in ("repeat-penalty", "frequency-penalty", "presence-penalty"):
        parser.add_argument(f"--{name}", type=float, default=None, help="user sampling")
    parser.add_argument("--dump", type=Path, default=None, help="per-scenario completions (JSONL)")
    parser.add_argument("--out", type=Path, default=None, help="the summary as JSON")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
