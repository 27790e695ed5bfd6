"""What every stage runner of the loop shares: the request, the run directory, the role models.

:class:`LoopContext` loads each role's model once per run (a self-play checkpoint too) and runs
a stage's async work on its own event loop; :func:`write_json` is how stages write their JSON
outputs (whole or not at all).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import write_json_atomic
from tooldojo.llm.base import ChatModel
from tooldojo.loop.config import LoopConfig
from tooldojo.loop.rundir import RunDir

ROLE_NAMES = ("user", "assistant", "server", "judge")


@dataclass
class LoopRequest:
    specs: list[str]
    run: Path
    iterations: int
    config: LoopConfig
    config_path: Path | None = None
    models: dict[str, ChatModel] | None = None
    """Role → model, bypassing ``tooldojo.yaml`` (tests, embedding applications)."""
    progress: Callable[[str], Any] | None = None
    """Called with a line when a stage starts or is skipped."""
    stop_after: str | None = None
    """Testing aid: raise :class:`StopLoop` after the stage with this key finishes."""
    show_progress: bool = False
    """Rich progress bars for the long stages (synthesis, probing, judging, evaluation)."""
    selfplay_loader: Callable[[Path], ChatModel] | None = None
    """Checkpoint folder → the model that plays the self-play roles (default
    :func:`tooldojo.loop.controller.probe_model`: llama.cpp on its GGUF); tests hand in a
    scripted one."""


class StopLoop(Exception):
    """Raised when ``stop_after`` is reached (simulates a kill between stages)."""


class NothingToTrain(ToolDojoError):
    """No trajectory of an iteration passed verification: there is nothing honest to train on.

    The loop ends there (the pool stage is recorded as failed, so a resume retries it) and still
    writes its report, which shows why each trajectory failed; training on what the gates
    rejected is never the fallback."""


@dataclass
class LoopContext:
    """One run of the loop: its request, run directory and the role models loaded so far."""

    request: LoopRequest
    rundir: RunDir
    role_models: dict[str, ChatModel] = field(default_factory=dict)

    @property
    def cfg(self) -> LoopConfig:
        return self.request.config

    def say(self, line: str) -> None:
        if self.request.progress is not None:
            self.request.progress(line)

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        """A progress bar's ``advance`` (a no-op without ``show_progress``)."""
        if not self.request.show_progress:
            yield lambda *args, **kwargs: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(description, total=total)

            def advance(*_: Any, total: int | None = None) -> None:
                """One item done; or, with ``total``, the count a stage learns only once it
                has chosen its work (the probe's sample, the judge's cases)."""
                if total is None:
                    progress.advance(task)
                else:
                    progress.update(task, total=total)

            yield advance

    def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """``anyio.run(work)``, then close the role models' HTTP connections on that same event
        loop (they belong to it; the next stage's loop opens its own)."""

        from tooldojo.llm.base import run_then_close

        return anyio.run(run_then_close, work, self._instances())

    def _instances(self) -> list[ChatModel]:
        """The loaded role models, each once: roles sharing a backend share one instance."""
        return list({id(model): model for model in self.role_models.values()}.values())

    def release_roles(self) -> None:
        """Free every role model this run loaded (each llama.cpp instance holds GBs of KV
        cache); the next stage that needs one loads it again. Training runs between two
        synthesis stages with none of them in use, and a self-play checkpoint is replaced by
        the next: kept, they took the loop to 17.5 GB and the OOM killer at iteration 2.
        Models handed in by the caller (``LoopRequest.models``) are theirs to close."""
        given = {id(model) for model in (self.request.models or {}).values()}
        for model in self._instances():
            if id(model) not in given:
                release(model)
        self.role_models.clear()

    def selfplay_model(self, checkpoint: Path) -> ChatModel:
        """The trained checkpoint as a role player, loaded once."""
        key = f"selfplay:{checkpoint}"
        if key not in self.role_models:
            loader = self.request.selfplay_loader or selfplay_loader(self.request)
            self.role_models[key] = loader(checkpoint)
        return self.role_models[key]

    def roles_identity(self) -> dict[str, Any]:
        """What the configured role models are (a change redoes the stages they play in)."""
        if self.request.models is not None:
            return {role: model.name for role, model in sorted(self.request.models.items())}
        path = self.request.config_path
        if path is None or not Path(path).is_file():
            return {"config": "defaults"}
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return {key: value for key, value in data.items() if key != "loop"}

    def model_for(self, role: str) -> ChatModel:
        """The model playing ``role`` (or a backend spec string), loaded once."""
        if role not in self.role_models:
            if self.request.models is not None and role in self.request.models:
                self.role_models[role] = self.request.models[role]
            else:
                from tooldojo.llm.config import load_config, load_model, role_backend

                if role in ROLE_NAMES:
                    # One instance per backend (as load_role_models gives), also when roles
                    # are asked for one at a time: four llama.cpp instances of the same model
                    # (user, assistant, server, judge) held four KV caches (OOM in make demo).
                    config = load_config(self.request.config_path)
                    backend = config.role(role).backend
                    shared = f"backend:{backend}"
                    if shared not in self.role_models:
                        self.role_models[shared] = load_model(role_backend(config.backend(backend)))
                    self.role_models[role] = self.role_models[shared]
                else:
                    self.role_models[role] = load_model(role)
        return self.role_models[role]


def selfplay_loader(request: LoopRequest) -> Callable[[Path], ChatModel]:
    """How a checkpoint is served for self-play: as the probe serves it, or with the settings
    of the backend ``loop.selfplay.serve_with`` names (a name that is no llama.cpp backend of
    the config raises)."""
    from tooldojo.loop._stage_probe import probe_model

    name = request.config.selfplay.serve_with
    if name is None:
        return probe_model
    from tooldojo.llm.config import load_config, load_model, role_backend

    template = load_config(request.config_path).backends.get(name)
    if template is None or isinstance(template, str) or template.kind != "llamacpp":
        raise ToolDojoError(
            f"loop.selfplay.serve_with: {name!r} is not a llamacpp backend of the config"
        )

    def load(checkpoint: Path) -> ChatModel:
        gguf = checkpoint.parent / "model.gguf"
        if not gguf.is_file():
            return probe_model(checkpoint)  # not exported: transformers, as the probe
        return load_model(role_backend(template.model_copy(update={"model": str(gguf)})))

    return load


def release(model: object) -> None:
    """Free a model's local resources now (llama.cpp engines and their KV caches, several GB
    each): the probe and evaluation models are loaded per stage and would otherwise live on
    until the process ends. Models without ``close`` (HTTP backends, scripted) are left."""
    close = getattr(model, "close", None)
    if callable(close):
        close()


def write_json(path: Path, payload: Any) -> None:
    """A stage's JSON output, whole or not at all (paths and dates written as text)."""
    write_json_atomic(path, payload, default=str)
