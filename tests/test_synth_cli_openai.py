"""``tooldojo synth`` end to end against an OpenAI-compatible endpoint over real HTTP.

Drafting argument values (``--values model``) and playing the episodes both call the model,
in one event loop; the run writes its trajectories and summary and closes its connections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from server_support import serve_in_thread
from tooldojo.cli import app
from tooldojo.jsonl import read_jsonl
from tooldojo.model import Trajectory

ROOT = Path(__file__).resolve().parent.parent
OFFICE = f"python:{ROOT / 'examples/tools/office.py'}:Office"


class Endpoint:
    """Answers drafting requests with ``{}`` (the planner falls back to the schema walk), the
    assistant with a closing text and the user simulator with a request."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        if "response_format" in body:
            kind, text = "draft", "{}"
        elif body.get("tools"):
            kind, text = "assistant", "Done."
        else:  # the user simulator: write the planned details into the request
            prompt = body["messages"][-1]["content"]
            chunks = re.findall(r"(?:^Details(?: \(\d+\))?: |these details: )(.*)$", prompt, re.M)
            values = [
                re.sub(r" \([^()]*\)$", "", part)
                for chunk in chunks
                for part in chunk.split("; ")
                if part != "(none)"
            ]
            goal = re.search(r"^Goal: (.*)$", prompt, re.M)
            task = goal.group(1) if goal else "help me"
            kind, text = "user", f"Please {task}, with " + ("; ".join(values) or "my calendar")
        self.kinds.append(kind)
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        )


@pytest.fixture()
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    scripted = Endpoint()
    with serve_in_thread(scripted.app) as url:
        yield scripted, url


def test_synth_cli_with_a_remote_model(tmp_path: Path, endpoint: tuple[Endpoint, str]):
    scripted, url = endpoint
    config = tmp_path / "tooldojo.yaml"
    config.write_text(
        json.dumps(
            {
                "backends": {"remote": {"kind": "openai", "model": "m", "base_urls": [url]}},
                "roles": {"user": "remote", "assistant": "remote"},
            }
        )
    )
    out = tmp_path / "out"
    args = ["synth", "--executor", OFFICE, "--n", "6", "--out", str(out), "--config", str(config)]
    args += ["--values", "model", "--categories", "single,multi_turn", "--min-per-tool", "0"]
    args += ["--dedup", "0"]  # the scripted user repeats itself for equal drafts
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trajectories = list(read_jsonl(out / "trajectories.jsonl", Trajectory))
    dropped = (out / "dropped.jsonl").read_text() if (out / "dropped.jsonl").exists() else ""
    assert len(trajectories) == 6, dropped
    assert {t.category for t in trajectories} == {"single", "multi_turn"}
    assert all(t.metadata["models"]["assistant"] == "m" for t in trajectories)
    assert {"draft", "user", "assistant"} <= set(scripted.kinds)
    assert "synthesis" in result.output  # the summary table

    again = CliRunner().invoke(app, args)  # resumes: nothing left to play
    assert again.exit_code == 0, again.output
    assert len(list(read_jsonl(out / "trajectories.jsonl", Trajectory))) == 6
