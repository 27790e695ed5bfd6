"""The last K pending scenarios of a synthesis run's play order, packed for another machine.

The run here plays its pending scenarios from the front of :func:`play_order`; a GPU machine
given the tail plays scenarios this one will not reach for hours, so the two never overlap.
Writes ``run.tgz`` (the run's manifest and the K scenarios, as ``<name>/``) and
``registry.jsonl.gz`` (only the registry lines those scenarios name) into OUT.

Usage: python plan_tail.py RUN_DIR K OUT [--registry runs/pool/registry.jsonl]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tarfile
import tempfile
from pathlib import Path

from tooldojo.synth.pipeline import MANIFEST
from tooldojo.synth.plan_file import PlanFile
from tooldojo.synth.runner import SCENARIOS, finished_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("k", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--registry", type=Path, default=Path("runs/pool/registry.jsonl"))
    args = parser.parse_args()
    done = finished_ids(args.run)
    pending = list(PlanFile(args.run / SCENARIOS).in_play_order(done))
    tail = pending[-args.k :]
    names = {name for scenario in tail for name in scenario.tools}
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / args.run.name
        stage.mkdir()
        with (stage / SCENARIOS).open("w", encoding="utf-8") as handle:
            handle.writelines(scenario.model_dump_json() + "\n" for scenario in tail)
        (stage / MANIFEST).write_bytes((args.run / MANIFEST).read_bytes())
        with tarfile.open(args.out / "run.tgz", "w:gz") as tar:
            tar.add(stage, arcname=args.run.name)
    kept = 0
    with args.registry.open("rb") as src, gzip.open(args.out / "registry.jsonl.gz", "wb") as dst:
        for line in src:
            if json.loads(line)["name"] in names:
                dst.write(line)
                kept += 1
    print(f"done {len(done)}, pending {len(pending)}: sent the last {len(tail)}, {kept} tools")


if __name__ == "__main__":
    main()
