"""The embedded default scored through ``python -m llama_cpp.server`` and in process agrees.

The same GGUF, greedy decoding, one thread each: the two paths must produce the same text for
every BFCL entry (the server is told ``repeat_penalty: 1.0`` through ``extra_body`` in the
config, as ``configs/llamacpp_server.yaml`` does; its own default is 1.1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from server_support import free_port
from tooldojo.cli import app
from tooldojo.llm.embedded import embedded_gguf_path
from tooldojo.llm.llamacpp import weights_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def llamacpp_server() -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        # The in-process backend's default weights (f16, converted once): same arithmetic.
        str(weights_file(embedded_gguf_path(), "f16")),
        "--model_alias",
        "smollm2",
        "--n_ctx",
        "4096",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--flash_attn",  # as in process (its default): irrelevance_91 parted without it
        "true",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {server.returncode}")
            time.sleep(0.1)
        else:
            pytest.fail("llama_cpp.server did not start within 60 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _eval(tmp_path: Path, name: str, *extra: str) -> dict[str, dict]:  # type: ignore[type-arg]
    out = tmp_path / f"{name}.json"
    args = ["eval", "bfcl", "-c", "simple_python,irrelevance", "--limit", "1", "--out", str(out)]
    args += ["--max-tokens", "48", "--concurrency", "1", "--n-ctx", "4096", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / f"{name}.entries.jsonl").read_text().splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def test_server_and_in_process_give_the_same_answers(tmp_path: Path, llamacpp_server: str):
    shipped = yaml.safe_load((ROOT / "configs/llamacpp_server.yaml").read_text())
    backend = shipped["backends"]["llamacpp-server"]
    backend["base_urls"] = [llamacpp_server]
    config = tmp_path / "tooldojo.yaml"
    config.write_text(yaml.safe_dump(shipped))

    served = _eval(tmp_path, "served", "--config", str(config), "--model", "llamacpp-server",
                   "--mode", "prompting")  # fmt: skip
    local = _eval(tmp_path, "local", "--model", "llamacpp")
    assert sorted(served) == sorted(local) and len(local) == 2
    for entry_id, row in local.items():
        twin = served[entry_id]
        assert row["mode"] == twin["mode"] == "prompting"
        assert row["completion_tokens"] > 0
        assert twin["raw"] == row["raw"], entry_id
        assert (twin["valid"], twin["error_type"]) == (row["valid"], row["error_type"])
