"""Does the compact tool rendering cost a trained model accuracy? Two trainings, one held-out probe.

The native (Hermes) prompt lists tools as compact signatures (``llm.codecs.compact_signature``,
about half the tokens of a JSON Schema line). This bench trains the same SFT data twice from
the same starting model, once per rendering, and probes each model greedily on the same
held-out synthetic turns with the rendering it was trained on:

* ``compact``: the rendering used everywhere (synthesis, training, inference);
* ``json``: each tool as its OpenAI JSON object on one line (the rendering compact replaced).

The JSON rendering exists only here: the bench swaps ``compact_signature`` for the run of one
arm (training rows and probe prompts both go through ``HermesCodec.render``). Python-call
samples are switched off in both arms, so every sample shows the rendering under test.

Decisions use held-out synthetic turns, never BFCL. Each held-out turn counts once: a run's
``heldout.jsonl`` is cumulative, so files of several iterations repeat turns.

    python bench/tool_rendering.py --data runs/full/iter-000/train_data.jsonl \\
        --heldout runs/full/iter-001/heldout.jsonl \\
        --heldout runs/selfplay3/iter-002/heldout.jsonl \\
        --config configs/full.yaml --out runs/rendering
    # -> runs/rendering/tool_rendering.json, <arm>/sft/..., <arm>/probe.jsonl

Resumable: a finished arm's ``result.json`` is kept; its training resumes from checkpoints and
its probe from the rows already written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # tooldojo, and bench's own modules

from bench.heldout_probe import distinct_heldout, line, probe_heldout  # noqa: E402

ARMS = ("compact", "json")


def json_line(tool: Any) -> str:
    """The rendering compact signatures replaced: the tool's OpenAI JSON object, one line."""
    return json.dumps(tool.to_openai(), ensure_ascii=False, separators=(",", ":"))


def use_rendering(arm: str) -> None:
    """Make ``HermesCodec.render`` list tools in ``arm``'s rendering (module-level swap)."""
    from tooldojo.llm import codecs

    if not hasattr(codecs, "_bench_compact"):
        codecs._bench_compact = codecs.compact_signature  # type: ignore[attr-defined]
    codecs.compact_signature = (  # type: ignore[assignment]
        codecs._bench_compact if arm == "compact" else json_line  # type: ignore[attr-defined]
    )


def tokens_per_tool(trajectories: list[Any], checkpoint: Path) -> dict[str, float]:
    """Mean tokens per distinct tool of the probe set, in each rendering (the tokenizer of a
    trained checkpoint, which is the starting model's)."""
    from transformers import AutoTokenizer

    from tooldojo.llm import codecs

    compact = getattr(codecs, "_bench_compact", codecs.compact_signature)
    tools = {tool.name: tool for t in trajectories for tool in t.tools}.values()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    count = max(len(tools), 1)

    def mean(render) -> float:
        return round(sum(len(tokenizer(render(t)).input_ids) for t in tools) / count, 1)

    return {"tools": len(tools), "compact": mean(compact), "json": mean(json_line)}


def run_arm(
    arm: str, data: Path, heldout: list[Any], cfg: Any, out: Path, *, max_length: int
) -> dict[str, Any]:
    """Train ``arm`` (SFT as the loop config says) and probe it as the loop probes."""
    from tooldojo.loop._context import release
    from tooldojo.loop._stage_probe import probe_model
    from tooldojo.train.settings import SFTSettings
    from tooldojo.train.sft import run_sft

    folder = out / arm
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    use_rendering(arm)
    # One max_length for both arms, long enough that JSON prompts are not dropped more often.
    overrides = {"python_share": 0.0, "max_length": max_length}
    sft = run_sft(data, cfg.model, folder / "sft", SFTSettings(**(dict(cfg.train.sft) | overrides)))
    model = probe_model(sft.checkpoint)  # llama.cpp on the exported GGUF, as the loop probes
    try:
        probed = probe_heldout(model, heldout, folder / "probe.jsonl", cfg)
    finally:
        release(model)
    record = {
        "arm": arm,
        "samples": sft.samples,
        "train_s": round(sft.seconds, 1),
        "train_tokens": sft.data.get("tokens"),
        "dropped_too_long": sft.data.get("dropped_too_long"),
        "tokens_per_s": sft.training.get("tokens_per_s"),
        **probed,
    }
    tmp = folder / ".result.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / "result.json")
    return record


def run_rendering_check(
    data: Path, heldout_files: list[Path], config: Path, out: Path, *, max_length: int = 4096
) -> dict[str, Any]:
    """Both arms, then ``tool_rendering.json`` in ``out``."""
    from tooldojo.loop.config import load_loop_config

    cfg = load_loop_config(config)
    heldout = distinct_heldout(heldout_files)
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = {
            arm: run_arm(arm, data, heldout, cfg, out, max_length=max_length) for arm in ARMS
        }
    finally:
        use_rendering("compact")
    report = {
        "question": "Does a model trained and asked with compact tool signatures lose accuracy "
        "against the JSON Schema rendering?",
        "data": str(data),
        "heldout": [str(p) for p in heldout_files],
        "heldout_trajectories": len(heldout),
        "tokens_per_tool": tokens_per_tool(heldout, out / "compact" / "sft" / "checkpoint"),
        "arms": results,
    }
    (out / "tool_rendering.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a loop's train_data.jsonl")
    parser.add_argument("--heldout", type=Path, action="append", required=True)
    parser.add_argument("--config", type=Path, required=True, help="the loop config (training)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-length", type=int, default=4096, help="training tokens per sample")
    args = parser.parse_args()
    report = run_rendering_check(
        args.data, args.heldout, args.config, args.out, max_length=args.max_length
    )
    for arm, r in report["arms"].items():
        print(f"{line(arm, r)}  train {r['train_s']:.0f} s ({r['train_tokens']} tokens)")
    print(json.dumps(report["tokens_per_tool"]))
    print(f"report in {args.out / 'tool_rendering.json'}")


if __name__ == "__main__":
    main()
