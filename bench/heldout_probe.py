"""Score trained models on held-out synthetic turns: the split decisions are made on, never BFCL.

Each model answers every distinct held-out turn greedily, through the loop's own probe (its
prompts, scoring and error classes), and the figures keep call turns and no-call decisions
apart. A run's ``heldout.jsonl`` is cumulative (iteration 2's file holds iterations 0 and 1's
turns), so files of several iterations or runs are merged with each conversation counted once.

    python bench/heldout_probe.py --config configs/full.yaml \\
        --heldout runs/full/iter-001/heldout.jsonl \\
        --heldout runs/selfplay3/iter-002/heldout.jsonl \\
        --model sft=runs/a/sft/model.gguf --model grpo=runs/a/grpo/checkpoint --out runs/probe
    # -> runs/probe/heldout_probe.json, runs/probe/<name>.probe.jsonl

Resumable: a model's probe file keeps the turns already answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def distinct_heldout(files: list[Path], fraction: float | None = None) -> list[Any]:
    """Passed held-out trajectories of ``files``, each conversation once.

    A trajectory is held out when its ``split`` says so, or, with ``fraction``, when the loop's
    stable split (:func:`tooldojo.loop.controller.is_heldout`) puts its scenario there: that
    reads a plain ``tooldojo synth`` output, where every trajectory is ``train``, the way the
    loop would split it. Ids are unique in the result: another run's trajectory that reuses an
    id (each run numbers its scenarios from zero) is renamed ``<file index>:<id>``, so the
    probe's per-turn records stay apart and can be paired across models.
    """
    from tooldojo.jsonl import read_jsonl
    from tooldojo.loop.controller import is_heldout
    from tooldojo.model import Trajectory

    seen: set[str] = set()
    ids: set[str] = set()
    out = []
    for index, path in enumerate(files):
        for trajectory in read_jsonl(path, Trajectory):
            held = trajectory.split == "heldout" or (
                fraction is not None and is_heldout(trajectory.scenario_id, fraction)
            )
            key = json.dumps([m.model_dump(mode="json") for m in trajectory.messages])
            if not (held and trajectory.passed) or key in seen:
                continue
            seen.add(key)
            if trajectory.id in ids:
                trajectory = trajectory.model_copy(update={"id": f"{index}:{trajectory.id}"})
            ids.add(trajectory.id)
            out.append(trajectory.model_copy(update={"split": "heldout"}))
    return out


def summarize(rows: list[Any]) -> dict[str, Any]:
    """Call turns and no-call decisions apart, with two partial measures of call turns."""
    calls = [r for r in rows if r.kind == "call"]
    decisions = [r for r in rows if r.kind != "call"]

    def right_tools(r: Any) -> bool:
        wanted = sorted(c.name for c in r.label.calls)
        return bool(r.calls) and sorted(c.name for c in r.calls) == wanted

    return {
        "call": [sum(r.correct for r in calls), len(calls)],
        "call_right_tools": [sum(right_tools(r) for r in calls), len(calls)],
        "call_format_errors": [sum(r.error_class == "format" for r in calls), len(calls)],
        "no_call": [sum(r.correct for r in decisions), len(decisions)],
        "errors": dict(
            Counter(f"{r.kind}/{r.error_class}" for r in rows if r.error_class).most_common()
        ),
    }


def load_probed(path: Path) -> Any:
    """A GGUF file on llama.cpp, or a trained checkpoint as the loop probes it."""
    from tooldojo.llm.config import load_model
    from tooldojo.loop._stage_probe import probe_model

    if path.suffix == ".gguf":
        return load_model(f"llamacpp:{path}")
    return probe_model(path)


def probe_heldout(model: Any, heldout: list[Any], out: Path, cfg: Any) -> dict[str, Any]:
    """Probe ``model`` on every turn of ``heldout`` into ``out``; its summary."""
    import anyio

    from tooldojo.jsonl import read_jsonl
    from tooldojo.loop.probe import ProbeRecord, run_probe

    started = time.perf_counter()
    counts = anyio.run(
        lambda: run_probe(
            model,
            {"heldout": heldout},
            out,
            limit=100_000,
            seed=cfg.seed,
            max_tokens=cfg.probe.max_tokens,
            concurrency=cfg.probe.concurrency,
        )
    )
    return {
        "probe_s": round(time.perf_counter() - started, 1),
        "probe_counts": counts,
        **summarize(list(read_jsonl(out, ProbeRecord))),
    }


def line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name:14s} call {r['call'][0]}/{r['call'][1]}  right tools "
        f"{r['call_right_tools'][0]}/{r['call_right_tools'][1]}  format errors "
        f"{r['call_format_errors'][0]}  no-call {r['no_call'][0]}/{r['no_call'][1]}"
    )


def main() -> None:
    from tooldojo.loop._context import release
    from tooldojo.loop.config import load_loop_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="loop config (probe, seed)")
    parser.add_argument("--heldout", type=Path, action="append", required=True)
    parser.add_argument(
        "--fraction",
        type=float,
        help="also hold out this share of scenarios by the loop's stable split (for a synth run)",
    )
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH (.gguf or dir)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = load_loop_config(args.config)
    heldout = distinct_heldout(args.heldout, args.fraction)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--model {spec!r}: expected NAME=PATH")
        model = load_probed(Path(path))
        try:
            results[name] = {"model": path} | probe_heldout(
                model, heldout, args.out / f"{name}.probe.jsonl", cfg
            )
        finally:
            release(model)
        print(line(name, results[name]), flush=True)
    report = {
        "heldout": [str(p) for p in args.heldout],
        "fraction": args.fraction,
        "heldout_trajectories": len(heldout),
        "models": results,
    }
    (args.out / "heldout_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report in {args.out / 'heldout_probe.json'}")


if __name__ == "__main__":
    main()
