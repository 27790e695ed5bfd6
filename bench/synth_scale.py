"""One synthesis run at scale, verified, and recorded as issue 15 asks (synth_scale.json).

Runs the real CLI: ``tooldojo synth`` on the given specs (the refined corpus), then ``tooldojo
verify`` with every content gate, each timed. Then writes

- ``--json`` (default ``docs/results/synth_scale.json``): the commands, wall times, trajectories
  planned / finished / dropped / verified / passed, distinct tools (in the passed ones),
  per-category counts, the shares of own, forced and templated turns per role (all and passed),
  the independent grounding check, failures by gate, and each acceptance target beside the
  measured figure (``met`` is computed, never assumed);
- ``--samples`` (default ``docs/samples``): ``trajectories.jsonl`` and ``README.md`` with
  ``--n-samples`` passed trajectories drawn at random with ``--sample-seed``, rendered as chats,
  and for each the checks a reader would want re-run on it (failed tool result, filler, code in
  prose), counted in the JSON.

``--from DIR`` skips synthesis and verification and records an existing synth output folder (its
``trajectories.jsonl``, ``verified.jsonl`` and ``manifest.json``), taking the wall times from its
manifest.

    python bench/synth_scale.py --specs pool/registry.jsonl pylib:default --n 400 \\
        --config configs/selfplay.yaml --out runs/scale
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tooldojo.jsonl import iter_jsonl_dicts, read_jsonl  # noqa: E402
from tooldojo.model import CATEGORIES, Trajectory  # noqa: E402
from tooldojo.verify.accounting import accounting, gate_failures, grounded_share  # noqa: E402

TARGETS = {"passed": 3000, "distinct_tools": 1500, "categories": 8, "grounded_share": 0.95}
TEMPLATE_CAP = 0.10
# What a reader checks by eye in a sample: the gates should have kept all three out.
FAILED_RESULT = re.compile(
    r"gave no valid result|timed out|\"error\"\s*:|schema error|was cut at", re.IGNORECASE
)
FILLER = re.compile(r"^(done\.|here is what i found)", re.IGNORECASE)
PROSE_CODE = re.compile(r"```|<tool_call>|\bdef \w+\(|\bfunction \w+\(|=>|;\s*$", re.MULTILINE)


def _run(command: list[str]) -> float:
    print("$", shlex.join(command), flush=True)
    start = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.monotonic() - start


def _lines(path: Path) -> int:
    """Complete lines of a JSONL output (0 when it does not exist)."""
    return sum(1 for _ in iter_jsonl_dicts(path)) if path.exists() else 0


def _manifest_seconds(manifest: dict) -> float | None:
    stage = (manifest.get("stages") or {}).get("synth") or {}
    if stage.get("wall_seconds"):  # the episodes' time summed over every session of the run
        return float(stage["wall_seconds"])
    if not stage.get("finished_at"):
        return None
    start = datetime.fromisoformat(stage["started_at"])
    return (datetime.fromisoformat(stage["finished_at"]) - start).total_seconds()


def _sample_flags(trajectory: Trajectory) -> dict[str, bool]:
    tool_texts = [m.content or "" for m in trajectory.messages if m.role == "tool"]
    prose = [m.content or "" for m in trajectory.messages if m.role == "assistant"]
    return {
        "failed_result": any(FAILED_RESULT.search(text) for text in tool_texts),
        "filler": any(FILLER.search(text.strip()) for text in prose if text.strip()),
        "prose_code": any(PROSE_CODE.search(text) for text in prose),
    }


def _render(trajectory: Trajectory) -> str:
    lines = [f"### {trajectory.id} ({trajectory.category})", ""]
    for message in trajectory.messages:
        if message.role == "system":
            continue
        origin = getattr(message, "origin", None) or "-"
        text = (message.content or "").strip().replace("\n", " ")
        calls = "; ".join(
            f"`{call.name}({json.dumps(call.arguments, ensure_ascii=False)})`"
            for call in message.tool_calls or []
        )
        lines.append(f"- **{message.role}** ({origin}): {text} {calls}".rstrip())
    return "\n".join(lines) + "\n"


def record(out: Path, commands: dict[str, str], seconds: dict[str, float | None], args) -> dict:
    verified = list(read_jsonl(out / "verified.jsonl", Trajectory))
    passed = [t for t in verified if t.passed]
    tools = {call.name for t in passed for m in t.messages for call in m.tool_calls or []}
    tools |= {tool.name for t in passed if t.category == "irrelevance" for tool in t.tools}
    per_category = {
        name: {
            "verified": sum(1 for t in verified if t.category == name),
            "passed": sum(1 for t in passed if t.category == name),
        }
        for name in CATEGORIES
    }
    rng = random.Random(args.sample_seed)
    samples = rng.sample(passed, min(args.n_samples, len(passed)))
    flags = {t.id: _sample_flags(t) for t in samples}
    grounded = grounded_share(passed)
    own = accounting(passed)
    # No passed trajectory means no share at all: a cap "met" on nothing would be a free pass.
    template_share = own.get("user", {}).get("shares", {}).get("template") if passed else None
    measured = {
        "passed": len(passed),
        "distinct_tools": len(tools),
        "categories": sum(1 for row in per_category.values() if row["passed"]),
        "grounded_share": grounded["share"],
    }
    report = {
        "commands": commands,
        "wall_seconds": seconds,
        "machine": "2 CPU cores (AMD EPYC), 24 GiB, embedded SmolLM2-135M-Instruct via llama.cpp",
        # Counted from the files, not the manifest: a resumed run's manifest counts only its
        # last segment.
        "planned": _lines(out / "scenarios.jsonl"),
        "finished": _lines(out / "trajectories.jsonl"),
        "dropped": _lines(out / "dropped.jsonl"),
        "verified": len(verified),
        "passed": len(passed),
        "passed_per_minute": (
            round(len(passed) / (seconds["synth"] / 60), 3) if seconds.get("synth") else None
        ),
        "distinct_tools": len(tools),
        "per_category": per_category,
        "accounting_all": accounting(verified),
        "accounting_passed": own,
        "grounded_requests_passed": grounded,
        "failures": gate_failures(verified),
        "samples": {
            "n": len(samples),
            "seed": args.sample_seed,
            "with_failed_result": sum(f["failed_result"] for f in flags.values()),
            "with_filler": sum(f["filler"] for f in flags.values()),
            "with_prose_code": sum(f["prose_code"] for f in flags.values()),
        },
        "targets": {
            name: {
                "target": target,
                "measured": measured[name],
                "met": _met(measured[name], target),
            }
            for name, target in TARGETS.items()
        }
        | {
            "template_share": {
                "target": f"<= {TEMPLATE_CAP}",
                "measured": template_share,
                "met": template_share is not None and template_share <= TEMPLATE_CAP,
            }
        },
    }
    _write_samples(Path(args.samples), samples, flags, report)
    return report


def _met(measured: float | None, target: float) -> bool:
    return measured is not None and measured >= target


def _write_samples(folder: Path, samples: list[Trajectory], flags, report: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(t.model_dump_json() + "\n" for t in samples)
    (folder / "trajectories.jsonl").write_text(body, encoding="utf-8")
    head = [
        "# Verified trajectories drawn at random",
        "",
        f"{len(samples)} of the {report['passed']} trajectories that passed every gate in the "
        f"run recorded in `docs/results/synth_scale.json`, drawn with seed "
        f"{report['samples']['seed']} (`bench/synth_scale.py`). Each message shows its role and "
        "who wrote it (`model`: the role's model freely; `forced`: copied or teacher-forced from "
        "the planned label; `template`; `executed`: a real tool result). Read them: the gates "
        "check words and values, not meaning.",
        "",
        f"Checks re-run on these samples: failed tool result "
        f"{report['samples']['with_failed_result']}, filler {report['samples']['with_filler']}, "
        f"code in prose {report['samples']['with_prose_code']}.",
        "",
    ]
    chats = []
    for trajectory in samples:
        marks = [name for name, hit in flags[trajectory.id].items() if hit]
        chats.append(_render(trajectory) + (f"\n*flagged: {', '.join(marks)}*\n" if marks else ""))
    (folder / "README.md").write_text("\n".join(head) + "\n" + "\n".join(chats), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--specs", nargs="+", default=[])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--config", default="configs/selfplay.yaml")
    parser.add_argument("--out", default="runs/scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from", dest="existing", default=None, help="record an existing folder")
    parser.add_argument("--command", default=None, help="with --from: the command that made it")
    parser.add_argument(
        "--synth-seconds",
        type=float,
        default=None,
        help="with --from: the synthesis wall time of a run that was resumed (its manifest "
        "times only the last segment)",
    )
    parser.add_argument(
        "--note", default=None, help="recorded as is: how the run was made (segments, machines)"
    )
    parser.add_argument("--json", default=str(ROOT / "docs/results/synth_scale.json"))
    parser.add_argument("--samples", default=str(ROOT / "docs/samples"))
    parser.add_argument("--n-samples", type=int, default=30)
    parser.add_argument("--sample-seed", type=int, default=0)
    args = parser.parse_args()
    tooldojo = str(Path(sys.executable).with_name("tooldojo"))
    if args.existing:
        out = Path(args.existing)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        commands = {"synth": args.command or f"(recorded from {out})"}
        seconds: dict[str, float | None] = {
            "synth": args.synth_seconds or _manifest_seconds(manifest)
        }
    else:
        if not args.specs:
            parser.error("--specs is required unless --from names a finished folder")
        out = Path(args.out)
        synth = [tooldojo, "synth", "--specs", *args.specs, "--n", str(args.n), "--out", str(out)]
        synth += ["--config", args.config, "--seed", str(args.seed), "--min-per-tool", "0"]
        verify = [tooldojo, "verify", str(out / "trajectories.jsonl"), "--out"]
        verify += [str(out / "verified.jsonl")]
        commands = {"synth": shlex.join(synth), "verify": shlex.join(verify)}
        seconds = {"synth": round(_run(synth), 1), "verify": round(_run(verify), 1)}
    report = record(out, commands, seconds, args)
    if args.note:
        report = {"note": args.note, **report}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(json.dumps({k: report[k] for k in ("passed", "distinct_tools", "targets")}, indent=2))
    print(f"written {path} and {args.samples}/")


if __name__ == "__main__":
    main()
