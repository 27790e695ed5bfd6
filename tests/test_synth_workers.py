"""``tooldojo synth --workers K``: one run played by K processes, merged without loss or twins.

The workers are real processes (spawned), each loading its models from the config: here an
OpenAI-compatible endpoint served over real HTTP from the test process, so that every worker
talks to the same scripted model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from typer.testing import CliRunner

from server_support import serve_in_thread
from test_synth_cli_openai import OFFICE, Endpoint
from tooldojo.cli import app
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.synth.runner import merge_worker_files, worker_dir, worker_of


class SlowEndpoint(Endpoint):
    """Each answer takes 0.3 s, so episodes are in flight when the signal comes."""

    async def chat(self, request: Request) -> JSONResponse:
        await anyio.sleep(0.3)
        return await super().chat(request)


@pytest.fixture()
def endpoint_url() -> Iterator[str]:
    with serve_in_thread(Endpoint().app) as url:
        yield url


def _args(tmp_path: Path, url: str, n: int, workers: int) -> list[str]:
    config = tmp_path / "tooldojo.yaml"
    config.write_text(
        json.dumps(
            {
                "backends": {"remote": {"kind": "openai", "model": "m", "base_urls": [url]}},
                "roles": {"user": "remote", "assistant": "remote"},
            }
        )
    )
    args = ["synth", "--executor", OFFICE, "--n", str(n), "--out", str(tmp_path / "out")]
    args += ["--config", str(config), "--categories", "single,multi_turn", "--min-per-tool", "0"]
    return [*args, "--dedup", "0", "--workers", str(workers), "--concurrency", "2"]


def _finished_ids(out: Path) -> list[str]:
    ids = [str(r["scenario_id"]) for _, r in iter_jsonl_dicts(out / "trajectories.jsonl")]
    return ids + [str(r["id"]) for _, r in iter_jsonl_dicts(out / "dropped.jsonl")]


def test_two_workers_play_each_scenario_once_and_the_parent_merges_and_records(
    tmp_path: Path, endpoint_url: str
):
    args = _args(tmp_path, endpoint_url, n=8, workers=2)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    planned = [str(r["id"]) for _, r in iter_jsonl_dicts(out / "scenarios.jsonl")]
    finished = _finished_ids(out)
    assert sorted(finished) == sorted(planned)  # every scenario once: none lost, none twice
    assert {worker_of(i, 2) for i in planned} == {0, 1}  # both workers had a share
    assert not (out / "workers").exists()  # merged and cleaned up
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["status"] == "done"
    assert stage["counts"]["planned"] == 8
    assert stage["counts"]["finished"] + stage["counts"]["dropped"] == 8
    assert stage["sessions"] == 1
    assert stage["accounting"]  # who wrote the turns, over the merged file
    assert "synthesis" in result.output  # the summary table, combined over the workers

    again = CliRunner().invoke(app, args)  # resumes: nothing left, nothing written twice
    assert again.exit_code == 0, again.output
    assert sorted(_finished_ids(out)) == sorted(planned)
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["counts"]["skipped"] == 8 and stage["sessions"] == 2


def test_merge_moves_whole_lines_once_and_keeps_what_is_already_merged(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "trajectories.jsonl").write_text(json.dumps({"id": "t1", "scenario_id": "s1"}) + "\n")
    mine = worker_dir(out, 1)
    mine.mkdir(parents=True)
    lines = [
        json.dumps({"id": "t1", "scenario_id": "s1"}),  # merged before a kill cut the merge
        json.dumps({"id": "t2", "scenario_id": "s2"}),
        '{"id": "t3", "scena',  # the episode a killed worker was writing
    ]
    (mine / "trajectories.jsonl").write_text("\n".join(lines))
    (mine / "dropped.jsonl").write_text(json.dumps({"id": "s4", "reason": "x"}) + "\n")
    assert merge_worker_files(out) == 2
    assert _finished_ids(out) == ["s1", "s2", "s4"]
    assert not mine.exists()
    assert merge_worker_files(out) == 0  # nothing left to move


def test_worker_shares_are_stable_and_cover_every_scenario():
    ids = [f"scenario-{n}" for n in range(400)]
    shares = Counter(worker_of(i, 4) for i in ids)
    assert set(shares) == {0, 1, 2, 3} and min(shares.values()) > 60
    assert [worker_of(i, 4) for i in ids] == [worker_of(i, 4) for i in ids]


def test_sigterm_to_the_parent_stops_the_workers_keeps_their_episodes_and_resumes(
    tmp_path: Path,
):
    """A slow endpoint holds the episodes open; SIGTERM then ends the run with exit 2, an
    interrupted manifest and whole merged lines, and the same command finishes the rest."""
    endpoint = SlowEndpoint()
    with serve_in_thread(endpoint.app) as url:
        args = _args(tmp_path, url, n=20, workers=2)
        command = [sys.executable, "-m", "tooldojo.cli", *args]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        out = tmp_path / "out"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("workers/*/trajectories.jsonl")):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr
        stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
        assert stage["status"] == "failed" and "interrupted" in stage["error"]
        assert not list(out.glob("workers/*/*.jsonl"))  # merged on the way out
        kept = _finished_ids(out)
        assert 0 < len(kept) < 20 and len(set(kept)) == len(kept)

        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
        planned = [str(r["id"]) for _, r in iter_jsonl_dicts(out / "scenarios.jsonl")]
        assert sorted(_finished_ids(out)) == sorted(planned)


def test_a_single_process_run_merges_what_workers_left_and_does_not_replay_it(
    tmp_path: Path, endpoint_url: str
):
    """A run killed with episodes still in a worker's file, resumed without --workers."""
    args = _args(tmp_path, endpoint_url, n=6, workers=2)
    assert CliRunner().invoke(app, args).exit_code == 0
    out = tmp_path / "out"
    lines = (out / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (out / "trajectories.jsonl").write_text("".join(lines[1:]))
    worker_dir(out, 1).mkdir(parents=True)
    (worker_dir(out, 1) / "trajectories.jsonl").write_text(lines[0])
    single = [*args[:-4], "--concurrency", "2"]  # the same run, --workers left out
    result = CliRunner().invoke(app, single)
    assert result.exit_code == 0, result.output
    planned = [str(r["id"]) for _, r in iter_jsonl_dicts(out / "scenarios.jsonl")]
    assert sorted(_finished_ids(out)) == sorted(planned)  # merged once, not played again
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["counts"]["skipped"] == 6 and not (out / "workers").exists()
