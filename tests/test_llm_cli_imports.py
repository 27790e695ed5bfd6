"""``tooldojo call`` starts without importing the other stages (mcp, datasketch/scipy, torch).

Before the sub-commands were imported lazily, ``import tooldojo.cli`` alone took about a second
of the call's 3-second budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("mcp", "datasketch", "scipy", "torch", "transformers", "trl", "tooldojo.synth")


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_cli_and_the_call_command_leave_the_other_stages_unimported():
    loaded = _modules_after(
        "import tooldojo.cli\n"
        "from tooldojo.cli import app\n"
        "import typer.main\n"
        "group = typer.main.get_command(app)\n"
        "import click\n"
        "group.get_command(click.Context(group), 'call')"
    )
    assert "tooldojo.llm.cli" in loaded  # the call command itself was resolved
    assert not [name for name in loaded if name.split(".")[0] in HEAVY or name in HEAVY]


def test_every_lazy_command_resolves_and_help_lists_them():
    out = subprocess.run(
        [sys.executable, "-m", "tooldojo.cli", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    for name in ("specs", "corpus", "serve", "verify", "export", "call", "train", "synth"):
        assert f" {name} " in out.stdout, name
    for name in ("eval", "loop", "report"):
        assert f" {name} " in out.stdout, name


def test_a_call_reads_its_prompt_on_two_threads_only_when_a_core_is_idle(monkeypatch):
    from tooldojo.llm import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.9, 1.0, 1.0))
    assert cli.prompt_threads() == 2
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (1.6, 1.0, 1.0))
    assert cli.prompt_threads() == 1  # both cores busy: a second thread would wait on the other
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert cli.prompt_threads() == 1


def test_a_call_takes_auto_weights_and_no_flash_attention_unless_they_are_set():
    from tooldojo.llm.cli import one_question_backend
    from tooldojo.llm.config import BackendConfig

    chosen = one_question_backend(BackendConfig(kind="llamacpp"), threads=1)
    assert chosen.weights == "auto" and chosen.max_batch == 1 and chosen.prefix_store
    assert chosen.n_threads == 1 and chosen.flash_attn is False
    kept = one_question_backend(
        BackendConfig(kind="llamacpp", weights="f16", flash_attn=True), threads=None
    )
    assert kept.weights == "f16" and kept.flash_attn  # set in the config: kept
    other = BackendConfig(kind="openai", model="m", base_urls=["http://h:1/v1"])
    assert one_question_backend(other, threads=None) == other
