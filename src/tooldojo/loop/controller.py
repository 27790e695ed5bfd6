"""The closed loop: synthesize → verify → train → probe → judge → expand → weights → evaluate.

The controller only sequences stages and records them in the run directory's manifest;
each stage is a function from files to files (see :mod:`tooldojo.loop.rundir`)::

    runs/<name>/manifest.json
    runs/<name>/base/eval/bfcl.json        the starting model, evaluated once
    runs/<name>/iter-000/
        scenarios.jsonl trajectories.jsonl  synthesis (planned episodes, role-play output)
        verified.jsonl                      verdicts; passed ones feed training
        train_data.jsonl heldout.jsonl      the training pool and the held-out split
        train/                              checkpoint, metrics.csv, model.gguf
        probe.jsonl probe_summary.json      greedy answers of the new model, accuracies
        judged.jsonl                        label-vs-model decisions
        expanded.jsonl                      new scenarios from verified model errors
        weights.json                        category/tool weights for the next iteration
        eval/bfcl.json                      BFCL scores of the new model
    runs/<name>/report.html, summary.md, plots/*.png

The held-out split is assigned per scenario by a stable hash, so it never changes across
re-runs, and it accumulates over iterations so every iteration is measured on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import existing_ids, read_jsonl, write_jsonl_atomic
from tooldojo.llm.base import ChatModel
from tooldojo.loop.config import LoopConfig
from tooldojo.loop.rundir import RunDir
from tooldojo.model import Scenario, Trajectory

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


class StopLoop(Exception):
    """Raised when ``stop_after`` is reached (simulates a kill between stages)."""


@dataclass
class _Context:
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
            yield lambda *args, **kwargs: progress.advance(task)

    def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """``anyio.run(work)``, then close the role models' HTTP connections on that same event
        loop (they belong to it; the next stage's loop opens its own)."""

        from tooldojo.llm.base import run_then_close

        return anyio.run(run_then_close, work, list(self.role_models.values()))

    def model_for(self, role: str) -> ChatModel:
        """The model playing ``role`` (or a backend spec string), loaded once."""
        if role not in self.role_models:
            if self.request.models is not None and role in self.request.models:
                self.role_models[role] = self.request.models[role]
            else:
                from tooldojo.llm.config import load_config, load_model, load_role_models

                if role in ROLE_NAMES:
                    config = load_config(self.request.config_path)
                    self.role_models[role] = load_role_models(config, (role,))[role]
                else:
                    self.role_models[role] = load_model(role)
        return self.role_models[role]


def is_heldout(scenario_id: str | None, fraction: float) -> bool:
    """Stable split: the same scenario id always lands on the same side."""
    if not scenario_id or fraction <= 0:
        return False
    value = int(hashlib.sha256(scenario_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return value < fraction


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_loop(request: LoopRequest) -> RunDir:
    """Run (or resume) ``request.iterations`` iterations; returns the run directory."""
    if request.iterations < 1:
        raise ToolDojoError("--iterations must be at least 1")
    if not request.specs and not request.config.synth.executor.startswith("python:"):
        raise ToolDojoError(
            "give at least one --specs file (or a python: executor in the "
            "loop.synth section of the config)"
        )
    config = {"specs": sorted(request.specs), "loop": request.config.model_dump()}
    rundir = RunDir(request.run, config=config, seed=request.config.seed)
    context = _Context(request, rundir)
    if request.config.eval.baseline:
        _stage(
            context,
            "base/eval",
            lambda: _evaluate(context, request.config.model, rundir.root / "base" / "eval"),
            outputs=[rundir.root / "base" / "eval" / "bfcl.json"],
        )
    for iteration in range(request.iterations):
        _iteration(context, iteration)
    from tooldojo.report import write_report

    write_report(rundir.root)
    return rundir


def _stage(
    context: _Context,
    key: str,
    work: Callable[[], dict | None],
    *,
    outputs: list[Path],
    inputs: list[Path] = (),
) -> None:  # type: ignore[assignment]
    if context.rundir.is_done(key):
        context.say(f"{key}: done, skipped")
    else:
        context.say(f"{key}: running")
        context.rundir.run_stage(key, work, inputs=inputs, outputs=outputs)
    if context.request.stop_after == key:
        raise StopLoop(key)


def _iteration(context: _Context, k: int) -> None:
    rundir = context.rundir
    it = rundir.iteration_dir(k)
    prev = rundir.root / f"iter-{k - 1:03d}" if k else None
    # (stage, work, inputs, outputs), files relative to the iteration folder.
    plan: list[tuple[str, Callable[[], dict | None], list[str], list[str]]] = [
        ("synth", lambda: _synthesize(context, it, prev), [], ["trajectories.jsonl"]),
        ("verify", lambda: _verify(context, it), ["trajectories.jsonl"], ["verified.jsonl"]),
        (
            "pool",
            lambda: _pool(context, it, prev),
            ["verified.jsonl"],
            ["train_data.jsonl", "heldout.jsonl"],
        ),
        (
            "train",
            lambda: _train(context, it, prev, k),
            ["train_data.jsonl"],
            ["train/result.json"],
        ),
        *(
            [
                (
                    "base-probe",
                    lambda: _base_probe(context, it),
                    ["heldout.jsonl"],
                    ["../base/probe.jsonl", "../base/probe_summary.json"],
                )
            ]
            if k == 0
            else []
        ),
        (
            "probe",
            lambda: _probe(context, it),
            ["train/result.json"],
            ["probe.jsonl", "probe_summary.json"],
        ),
        ("judge", lambda: _judge(context, it), ["probe.jsonl"], ["judged.jsonl"]),
        ("expand", lambda: _expand(context, it, k), ["judged.jsonl"], ["expanded.jsonl"]),
        ("weights", lambda: _weights(context, it), ["probe.jsonl"], ["weights.json"]),
        (
            "eval",
            lambda: _evaluate(context, str(it / "train" / "checkpoint"), it / "eval"),
            ["train/result.json"],
            ["eval/bfcl.json"],
        ),
    ]
    for stage, work, inputs, outputs in plan:
        _stage(
            context,
            f"{it.name}/{stage}",
            work,
            inputs=[Path(os.path.normpath(it / name)) for name in inputs],
            outputs=[Path(os.path.normpath(it / name)) for name in outputs],
        )
    from tooldojo.report import write_report

    write_report(rundir.root)
    context.say(f"{it.name}: report at {rundir.root / 'report.html'}")


# --- stages ------------------------------------------------------------------------------


def _synthesize(context: _Context, it: Path, prev: Path | None) -> dict[str, int]:
    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared

    cfg = context.cfg.synth
    weights: dict[str, Any] = {}
    expansions: list[Scenario] = []
    if prev is not None:
        weights = json.loads((prev / "weights.json").read_text())
        expansions = list(read_jsonl(prev / "expanded.jsonl", Scenario))
    roles = ("user", "assistant") + (("server",) if cfg.executor == "simulated" else ())
    request = SynthRequest(
        specs=list(context.request.specs),
        n=cfg.n,
        out=it,
        categories=cfg.categories,
        concurrency=cfg.concurrency,
        config=context.request.config_path,
        executor=cfg.executor,
        seed=context.cfg.seed * 1000 + int(it.name.split("-")[1]),
        min_per_tool=cfg.min_per_tool,
        max_steps=cfg.max_steps,
        values=cfg.values,
        guidance=cfg.guidance,
        weights=weights,
        models={role: context.model_for(role) for role in roles},
    )

    async def go() -> tuple[Any, dict[str, int]]:
        prepared = await prepare_run(request)
        planned = {entry.id for entry in prepared.scenarios.entries()}
        prepared.scenarios.extend(s for s in expansions if s.id not in planned)
        with context.bar(f"{it.name} synthesis", prepared.pending_count()) as advance:
            summary = await run_prepared(prepared, advance)
        return summary, prepared.env.assistant.stats.as_dict()

    summary, guidance = context.run(go)
    if summary.aborted:
        raise ToolDojoError(f"synthesis stopped: {summary.aborted}")
    for line in summary.errors[:3]:  # failed episodes are left out of the data: say why
        context.say(f"{it.name}: a synthesis episode failed: {line}")
    names = ("planned", "finished", "failed", "dropped", "retried")
    counts = {name: summary.total(name) for name in names} | {"bfcl_hits": len(summary.bfcl_hits)}
    return counts | {f"assistant_{k}": v for k, v in guidance.items()}


def _verify(context: _Context, it: Path) -> dict[str, int]:
    from tooldojo.verify.pipeline import VerifyOptions, verify_file

    run = anyio.run(
        verify_file,
        it / "trajectories.jsonl",
        it / "verified.jsonl",
        VerifyOptions(gates=context.cfg.verify.gates),
    )
    total = len(existing_ids(it / "verified.jsonl"))
    passed = sum(1 for t in read_jsonl(it / "verified.jsonl", Trajectory) if t.passed)
    return {"verified": total, "passed": passed, "new": run.verified}


def _pool(context: _Context, it: Path, prev: Path | None) -> dict[str, int]:
    """Training pool = new passed train-split data + the last iteration's hard and corrected
    samples; the held-out split accumulates."""
    from tooldojo.loop.judge import JudgedRecord

    fraction = context.cfg.synth.heldout_fraction
    passed = [t for t in read_jsonl(it / "verified.jsonl", Trajectory) if t.passed]
    heldout = [
        t.model_copy(update={"split": "heldout"})
        for t in passed
        if is_heldout(t.scenario_id, fraction) and not (t.scenario_id or "").startswith("x")
    ]
    held_ids = {t.id for t in heldout}
    train = [t.model_copy(update={"split": "train"}) for t in passed if t.id not in held_ids]
    carried = 0
    if prev is not None:
        previous_pool = {t.id: t for t in read_jsonl(prev / "train_data.jsonl", Trajectory)}
        for record in read_jsonl(prev / "judged.jsonl", JudgedRecord):
            if record.decision == "model_wrong" and record.trajectory_id in previous_pool:
                train.append(previous_pool.pop(record.trajectory_id))
                carried += 1
            elif record.decision == "label_wrong" and record.corrected is not None:
                train.append(record.corrected.model_copy(update={"passed": True}))
                carried += 1
        heldout = list(read_jsonl(prev / "heldout.jsonl", Trajectory)) + heldout
    from tooldojo.bfcl_guard import check_training_rows, guard_mode, row_id_of

    bfcl_hits = check_training_rows(train)  # BFCL content, whatever path it came by
    if bfcl_hits and guard_mode(context.request.config_path) == "refuse":
        refused = {row_id_of(hit) for hit in bfcl_hits}
        train = [t for t in train if t.id not in refused]
    for hit in bfcl_hits:
        context.say(f"{it.name}: BFCL guard: {hit}")
    if not train:
        raise ToolDojoError(
            f"{it}: no verified training data (every trajectory failed "
            "verification); see verified.jsonl and `tooldojo verify --explain`"
        )
    write_jsonl_atomic(it / "train_data.jsonl", train)
    write_jsonl_atomic(it / "heldout.jsonl", heldout)
    return {
        "train": len(train),
        "heldout": len(heldout),
        "carried": carried,
        "bfcl_hits": len(bfcl_hits),
    }


def _train(context: _Context, it: Path, prev: Path | None, k: int) -> dict[str, int]:
    from tooldojo.train.settings import GRPOSettings, SFTSettings

    cfg = context.cfg.train
    kind = cfg.first if k == 0 else cfg.then
    model = context.cfg.model if prev is None else str(prev / "train" / "checkpoint")
    if kind == "sft":
        from tooldojo.train.sft import run_sft

        result = run_sft(it / "train_data.jsonl", model, it / "train", SFTSettings(**cfg.sft))
    else:
        from tooldojo.train.grpo import run_grpo

        result = run_grpo(it / "train_data.jsonl", model, it / "train", GRPOSettings(**cfg.grpo))
    return {"steps": result.steps, "samples": result.samples, "seconds": int(result.seconds)}


def probe_model(checkpoint: Path) -> ChatModel:
    """The trained model for probing: llama.cpp on its GGUF when exported, else transformers."""
    from tooldojo.llm.config import load_model

    gguf = checkpoint.parent / "model.gguf"
    if gguf.is_file():
        return load_model(f"llamacpp:{gguf}")
    return load_model(f"transformers:{checkpoint}")


def _probe(context: _Context, it: Path) -> dict[str, int]:
    pools = {
        "train": list(read_jsonl(it / "train_data.jsonl", Trajectory)),
        "heldout": list(read_jsonl(it / "heldout.jsonl", Trajectory)),
    }
    return _probe_into(context, probe_model(it / "train" / "checkpoint"), pools, it)


def _base_probe(context: _Context, it: Path) -> dict[str, int]:
    """The starting model on the first held-out split: the "before" of the held-out figures."""
    model = context.cfg.model
    if (Path(model) / "tooldojo_train.json").is_file():
        base = probe_model(Path(model))
    else:
        from tooldojo.llm.config import load_model

        spec = _eval_spec(model)
        base = load_model(f"llamacpp:{model}" if spec.endswith(".gguf") else spec)
    pools = {"heldout": list(read_jsonl(it / "heldout.jsonl", Trajectory))}
    return _probe_into(context, base, pools, context.rundir.root / "base")


def _probe_into(
    context: _Context, model: ChatModel, pools: dict[str, list[Trajectory]], folder: Path
) -> dict[str, int]:
    from tooldojo.loop.probe import ProbeRecord, accuracy_table, run_probe

    cfg = context.cfg.probe
    folder.mkdir(parents=True, exist_ok=True)
    with context.bar(f"{folder.name} probe", None) as advance:
        counts = context.run(
            lambda: run_probe(
                model,
                pools,
                folder / "probe.jsonl",
                limit=cfg.max_samples,
                seed=context.cfg.seed,
                max_tokens=cfg.max_tokens,
                concurrency=cfg.concurrency,
                progress=advance,
            )
        )
    _write_json(
        folder / "probe_summary.json",
        accuracy_table(read_jsonl(folder / "probe.jsonl", ProbeRecord)),
    )
    return counts


def _judge(context: _Context, it: Path) -> dict[str, int]:
    from tooldojo.loop.judge import run_judge

    judges = [context.model_for(name) for name in context.cfg.judge.judges]
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    out = it / "judged.jsonl"
    with context.bar(f"{it.name} judge", None) as advance:
        counts = context.run(
            lambda: run_judge(
                judges,
                it / "probe.jsonl",
                pool,
                out,
                max_cases=context.cfg.judge.max_cases,
                progress=advance,
            )
        )
    out.touch()
    return counts


def _expand(context: _Context, it: Path, k: int) -> dict[str, int]:
    from tooldojo.loop.expand import run_expand
    from tooldojo.synth.labels import ArgumentDrafter

    cfg = context.cfg.expand
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    drafter = ArgumentDrafter(
        context.model_for("user") if context.cfg.synth.values == "model" else None
    )
    out = it / "expanded.jsonl"
    counts = context.run(
        lambda: run_expand(
            it / "judged.jsonl",
            pool,
            out,
            per_error=cfg.per_error,
            max_total=cfg.max_total,
            iteration=k,
            seed=context.cfg.seed,
            drafter=drafter,
        )
    )
    out.touch()
    return counts


def _weights(context: _Context, it: Path) -> dict[str, int]:
    from tooldojo.loop.probe import ProbeRecord
    from tooldojo.loop.weights import next_weights

    weights = next_weights(read_jsonl(it / "probe.jsonl", ProbeRecord), context.cfg.weights.floor)
    _write_json(it / "weights.json", weights)
    return {"categories": len(weights["categories"]), "tools": len(weights["tools"])}


def _evaluate(context: _Context, model: str, out_dir: Path) -> dict[str, int]:
    """BFCL (configured categories, each configured mode) into ``out_dir/bfcl.json``."""
    from tooldojo.eval.bfcl_runner import BFCLSettings, run_bfcl
    from tooldojo.eval.models import resolve_model

    cfg = context.cfg.eval
    settings = BFCLSettings(
        categories=cfg.bfcl_categories,
        limit=cfg.bfcl_limit,
        seed=context.cfg.seed,
        concurrency=cfg.concurrency,
        max_tokens=cfg.max_tokens,
    )
    scores: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for mode in cfg.modes:
        evaluated = resolve_model(_eval_spec(model), mode)
        with context.bar(f"BFCL {mode} {out_dir.parent.name}", None) as advance:
            run = anyio.run(
                lambda e=evaluated, m=mode, a=advance: run_bfcl(
                    e, out_dir / f"bfcl_{m}.jsonl", settings, on_result=a
                )
            )
        scores[mode] = run.summary
        counts[mode] = len(run.results)
    _write_json(out_dir / "bfcl.json", scores)
    return counts


def _eval_spec(model: str) -> str:
    """The evaluation harness's spec for a loop model reference (see train.models)."""
    from tooldojo.train.models import EMBEDDED_ALIASES

    if model in EMBEDDED_ALIASES:
        return "llamacpp"
    path = Path(model)
    if path.is_dir() and not (path / "tooldojo_train.json").is_file():
        return f"transformers:{path}"  # a plain Hugging Face checkpoint (the starting model)
    return model
