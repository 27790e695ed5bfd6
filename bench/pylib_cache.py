"""Loading ``pylib:default`` cold (built: introspection and probe calls) and warm (read back
from the disk cache), each in a fresh interpreter, as a process naming ``pylib:`` does.

Both loads must yield the same tools (compared by a digest of their JSON). The floor, in the
same run: a fresh interpreter importing the default modules alone, which a cold build needs
and a warm load skips. Prints each figure, the ratios and the load average.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/pylib_cache.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from tooldojo.specs.pytools import DEFAULT_MODULES

LOAD = """
import hashlib, json, time
started = time.perf_counter()
from tooldojo.specs.pytools import pylib_tools
imported = time.perf_counter()
tools = pylib_tools("pylib:default")
loaded = time.perf_counter()
text = json.dumps([tool.model_dump(mode="json") for tool in tools], sort_keys=True)
print(json.dumps({"import": imported - started, "seconds": loaded - imported, "tools": len(tools),
                  "digest": hashlib.sha256(text.encode()).hexdigest()}))
"""
"""``seconds``: the ``pylib_tools`` call alone; ``import``: importing tooldojo's pytools package
first (paid by any process that loads tools, cached or not)."""

FLOOR = (
    "import importlib, json, time\nstarted = time.perf_counter()\n"
    + "".join(f"importlib.import_module({module!r})\n" for module in DEFAULT_MODULES)
    + 'print(json.dumps({"seconds": time.perf_counter() - started}))\n'
)


def fresh(code: str, cache: str) -> dict:
    """Run ``code`` in a fresh interpreter with ``cache`` as ``$TOOLDOJO_CACHE``."""
    env = os.environ | {"TOOLDOJO_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cold, warm, floor, imports = [], [], [], []
    digests = set()
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            first = fresh(LOAD, cache)  # empty cache: builds and stores
            second = fresh(LOAD, cache)  # reads it back
            floor.append(fresh(FLOOR, cache)["seconds"])
        assert first["digest"] == second["digest"], "the cached library differs from the built one"
        digests.add(first["digest"])
        cold.append(first["seconds"])
        warm.append(second["seconds"])
        imports.append(second["import"])
        print(
            f"round: cold {first['seconds']:.2f} s, warm {second['seconds']:.3f} s "
            f"(after importing the package: {second['import']:.2f} s), import floor "
            f"{floor[-1]:.2f} s, {first['tools']} tools (same digest)"
        )
    cold_s, warm_s, floor_s, import_s = (statistics.median(x) for x in (cold, warm, floor, imports))
    print(
        f"median of {args.rounds}: cold {cold_s:.2f} s, warm {warm_s:.3f} s "
        f"(cold/warm {cold_s / warm_s:.0f}x; package import {import_s:.2f} s either way), "
        f"import floor {floor_s:.2f} s (cold/floor {cold_s / floor_s:.1f}x); "
        f"load average {os.getloadavg()[0]:.1f}; "
        f"{len(digests)} distinct library digest(s) over the rounds"
    )


if __name__ == "__main__":
    main()
