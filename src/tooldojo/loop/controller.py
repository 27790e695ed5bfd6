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
        accounting.json pool.json           who wrote the turns ({role: {origin: n}}); sampling
        role_calls.jsonl                    self-played user/server answers (multi-role SFT)
        loop_stats.json                     the iteration's figures, per role
    runs/<name>/selfplay.json               per iteration and role: shares, pass rates, accuracy
    runs/<name>/report.html, summary.md, plots/*.png

The held-out split is assigned per scenario by a stable hash, so it never changes across
re-runs, and it accumulates over iterations so every iteration is measured on it.

Self-play: from iteration 1 on, the previous iteration's checkpoint (its exported GGUF on the
embedded llama.cpp backend, else the checkpoint through transformers) plays the roles named in
``loop.selfplay.roles``. Its verified trajectories with nothing forced all enter the pool;
trajectories with forced turns only up to the iteration's ``forced_share`` cap.

Resume is by inputs (see :mod:`tooldojo.loop.rundir`): each stage records its input files,
the models it uses and its config section; a stage whose inputs changed is redone, and so
is everything downstream of it.
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
from tooldojo.loop.rundir import RunDir, model_identity, stage_inputs
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
    selfplay_loader: Callable[[Path], ChatModel] | None = None
    """Checkpoint folder → the model that plays the self-play roles (default
    :func:`probe_model`: llama.cpp on its GGUF); tests hand in a scripted one."""


class StopLoop(Exception):
    """Raised when ``stop_after`` is reached (simulates a kill between stages)."""


class NothingToTrain(ToolDojoError):
    """No trajectory of an iteration passed verification: there is nothing honest to train on.

    The loop ends there (the pool stage is recorded as failed, so a resume retries it) and still
    writes its report, which shows why each trajectory failed; training on what the gates
    rejected is never the fallback."""


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

    def selfplay_model(self, checkpoint: Path) -> ChatModel:
        """The trained checkpoint as a role player, loaded once."""
        key = f"selfplay:{checkpoint}"
        if key not in self.role_models:
            loader = self.request.selfplay_loader or probe_model
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
            inputs=stage_inputs(
                [],
                root=rundir.root,
                models={"start": request.config.model},
                eval=request.config.eval.model_dump(),
                seed=request.config.seed,
            ),
            outputs=[rundir.root / "base" / "eval" / "bfcl.json"],
            clears=[rundir.root / "base" / "eval"],
        )
    for iteration in range(request.iterations):
        try:
            _iteration(context, iteration)
        except NothingToTrain as why:
            context.say(f"the loop stops: {why}")
            break
    _write_json(rundir.root / "selfplay.json", selfplay_record(rundir.root))
    from tooldojo.report import write_report

    write_report(rundir.root)
    return rundir


def _stage(
    context: _Context,
    key: str,
    work: Callable[[], dict | None],
    *,
    outputs: list[Path],
    inputs: dict[str, str],
    clears: list[Path] = (),  # type: ignore[assignment]
) -> None:
    if context.rundir.is_done(key, inputs):
        context.say(f"{key}: done, skipped")
    else:
        stale = context.rundir.stale(key, inputs)
        context.say(f"{key}: {'inputs changed, redoing' if stale else 'running'}")
        context.rundir.run_stage(key, work, inputs=inputs, outputs=outputs, clears=clears)
    if context.request.stop_after == key:
        raise StopLoop(key)


def _iteration(context: _Context, k: int) -> None:
    rundir = context.rundir
    cfg = context.cfg
    it = rundir.iteration_dir(k)
    prev = rundir.root / f"iter-{k - 1:03d}" if k else None
    start_model = cfg.model if prev is None else str(prev / "train" / "checkpoint")
    checkpoint = str(it / "train" / "checkpoint")
    selfplay = prev is not None and bool(cfg.selfplay.roles)
    # (stage, work, input files, models, config values, outputs, extra files a redo clears),
    # files relative to the iteration folder.
    plan: list[tuple[str, Callable[[], dict | None], list[str], dict, dict, list[str], list[str]]]
    plan = [
        (
            "synth",
            lambda: _synthesize(context, it, prev, k),
            (["../" + prev.name + "/weights.json", "../" + prev.name + "/expanded.jsonl"])
            if prev
            else [],
            {"selfplay": start_model} if selfplay else {},
            {
                "synth": cfg.synth.model_dump(),
                "seed": cfg.seed,
                "specs": _spec_hashes(context.request.specs),
                "roles": context.roles_identity(),
                "selfplay": cfg.selfplay.roles if selfplay else [],
            },
            ["trajectories.jsonl"],
            ["scenarios.jsonl", "dropped.jsonl", "manifest.json", "role_calls.jsonl"],
        ),
        (
            "verify",
            lambda: _verify(context, it),
            ["trajectories.jsonl"],
            {},
            {"verify": cfg.verify.model_dump()},
            ["verified.jsonl"],
            [],
        ),
        (
            "pool",
            lambda: _pool(context, it, prev, k),
            ["verified.jsonl", "role_calls.jsonl"]
            + (
                [
                    f"../{prev.name}/{n}"
                    for n in ("train_data.jsonl", "judged.jsonl", "heldout.jsonl")
                ]
                if prev
                else []
            ),
            {},
            {
                "heldout": cfg.synth.heldout_fraction,
                "forced_cap": cfg.selfplay.forced_cap(k),
                "seed": cfg.seed,
            },
            ["train_data.jsonl", "heldout.jsonl", "accounting.json", "pool.json"],
            [],
        ),
        (
            "train",
            lambda: _train(context, it, prev, k),
            ["train_data.jsonl"],
            {"start": start_model},
            {
                "train": cfg.train.model_dump(),
                "kind": cfg.train.first if k == 0 else cfg.train.then,
            },
            ["train/result.json"],
            ["train"],
        ),
        *(
            [
                (
                    "base-probe",
                    lambda: _base_probe(context, it),
                    ["heldout.jsonl"],
                    {"start": cfg.model},
                    {"probe": cfg.probe.model_dump(), "seed": cfg.seed},
                    ["../base/probe.jsonl", "../base/probe_summary.json"],
                    [],
                )
            ]
            if k == 0
            else []
        ),
        (
            "probe",
            lambda: _probe(context, it),
            ["train_data.jsonl", "heldout.jsonl", "train/result.json"],
            {"checkpoint": checkpoint},
            {"probe": cfg.probe.model_dump(), "seed": cfg.seed},
            ["probe.jsonl", "probe_summary.json"],
            [],
        ),
        (
            "judge",
            lambda: _judge(context, it),
            ["probe.jsonl", "train_data.jsonl"],
            {},
            {
                "judge": cfg.judge.model_dump(),
                "verify": cfg.verify.model_dump(),
                "roles": context.roles_identity(),
            },
            ["judged.jsonl"],
            [],
        ),
        (
            "expand",
            lambda: _expand(context, it, k),
            ["judged.jsonl", "train_data.jsonl"],
            {},
            {
                "expand": cfg.expand.model_dump(),
                "values": cfg.synth.values,
                "seed": cfg.seed,
                "roles": context.roles_identity(),
            },
            ["expanded.jsonl"],
            [],
        ),
        (
            "weights",
            lambda: _weights(context, it),
            ["probe.jsonl"],
            {},
            {"weights": cfg.weights.model_dump()},
            ["weights.json"],
            [],
        ),
        (
            "eval",
            lambda: _evaluate(context, checkpoint, it / "eval"),
            ["train/result.json"],
            {"checkpoint": checkpoint},
            {"eval": cfg.eval.model_dump(), "seed": cfg.seed},
            ["eval/bfcl.json"],
            ["eval"],
        ),
        (
            "stats",
            lambda: _stats(context, it, prev),
            [
                "verified.jsonl",
                "accounting.json",
                "pool.json",
                "probe_summary.json",
                "probe.jsonl",
                "judged.jsonl",
                "expanded.jsonl",
                *([f"../{prev.name}/expanded.jsonl"] if prev else []),
            ],
            {},
            {},
            ["loop_stats.json"],
            [],
        ),
    ]
    for stage, work, files, models, values, outputs, clears in plan:
        _stage(
            context,
            f"{it.name}/{stage}",
            work,
            inputs=stage_inputs(
                [Path(os.path.normpath(it / name)) for name in files],
                root=rundir.root,
                models=models,
                **values,
            ),
            outputs=[Path(os.path.normpath(it / name)) for name in outputs],
            clears=[Path(os.path.normpath(it / name)) for name in clears],
        )
    from tooldojo.report import write_report

    write_report(rundir.root)
    context.say(f"{it.name}: report at {rundir.root / 'report.html'}")


def _spec_hashes(specs: list[str]) -> dict[str, str]:
    return {spec: model_identity(spec) for spec in sorted(specs)}


# --- stages ------------------------------------------------------------------------------


def _synthesize(context: _Context, it: Path, prev: Path | None, k: int) -> dict[str, int]:
    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared

    cfg = context.cfg.synth
    weights: dict[str, Any] = {}
    expansions: list[Scenario] = []
    if prev is not None:
        weights = json.loads((prev / "weights.json").read_text())
        expansions = list(read_jsonl(prev / "expanded.jsonl", Scenario))
    roles = ("user", "assistant") + (("server",) if cfg.executor == "simulated" else ())
    selfplayed = set(context.cfg.selfplay.roles) if prev is not None else set()
    models = {role: context.model_for(role) for role in roles if role not in selfplayed}
    if selfplayed:
        from tooldojo.loop.roles import ROLE_CALLS, TRAINED_ROLES, RecordingModel

        assert prev is not None
        player = context.selfplay_model(prev / "train" / "checkpoint")
        for role in roles:
            if role in selfplayed:
                # the user's and server's own answers are recorded for multi-role SFT
                models[role] = (
                    RecordingModel(player, role, it / ROLE_CALLS)
                    if role in TRAINED_ROLES
                    else player
                )
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
        models=models,
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
    # Failed episodes leave the stage incomplete: the next resume plays them again (the
    # runner skips finished and dropped scenarios), and what follows sees the new data.
    counts["incomplete"] = counts["failed"]
    return counts | {f"assistant_{key}": v for key, v in guidance.items()}


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


def _pool(context: _Context, it: Path, prev: Path | None, k: int) -> dict[str, int]:
    """Training pool = new passed train-split data (rejection-sampled by forced share) + the
    last iteration's hard samples and re-gated corrections; the held-out split accumulates.
    Writes ``accounting.json`` (``{role: {origin: n}}`` over the synthesized trajectories) and
    ``pool.json`` (the sampling, and who wrote the turns that passed and that were admitted)."""
    from tooldojo.loop.accounting import admit_by_forced_share, call_turn_origins
    from tooldojo.loop.judge import JudgedRecord
    from tooldojo.loop.roles import ROLE_CALLS, TRAINED_ROLES, role_samples
    from tooldojo.verify.accounting import count_origins as accounting

    fraction = context.cfg.synth.heldout_fraction
    verified = list(read_jsonl(it / "verified.jsonl", Trajectory))
    passed = [t for t in verified if t.passed]
    heldout = [
        t.model_copy(update={"split": "heldout"})
        for t in passed
        if is_heldout(t.scenario_id, fraction) and not (t.scenario_id or "").startswith("x")
    ]
    held_ids = {t.id for t in heldout}
    fresh = [t.model_copy(update={"split": "train"}) for t in passed if t.id not in held_ids]
    cap = context.cfg.selfplay.forced_cap(k)
    admitted, sampling = admit_by_forced_share(fresh, cap, seed=context.cfg.seed * 1000 + k)
    roles = role_samples(it / ROLE_CALLS, admitted)  # self-played user/server turns that passed
    train = admitted + roles
    carried = 0
    if prev is not None:
        previous_pool = {t.id: t for t in read_jsonl(prev / "train_data.jsonl", Trajectory)}
        for record in read_jsonl(prev / "judged.jsonl", JudgedRecord):
            if record.decision == "model_wrong" and record.trajectory_id in previous_pool:
                train.append(previous_pool.pop(record.trajectory_id))
                carried += 1
            elif record.decision == "label_wrong" and record.corrected is not None:
                train.append(record.corrected)  # passed every gate again (judge.regate)
                carried += 1
        heldout = list(read_jsonl(prev / "heldout.jsonl", Trajectory)) + heldout
    from tooldojo.bfcl_guard import check_training_rows, guard_mode, row_id_of

    bfcl_hits = check_training_rows(train)  # BFCL content, whatever path it came by
    if bfcl_hits and guard_mode(context.request.config_path) == "refuse":
        refused = {row_id_of(hit) for hit in bfcl_hits}
        train = [t for t in train if t.id not in refused]
    for hit in bfcl_hits:
        context.say(f"{it.name}: BFCL guard: {hit}")
    # The shared contract: {role: {origin: n}} over everything this iteration synthesized.
    _write_json(it / "accounting.json", accounting(verified))
    if not train:
        raise NothingToTrain(
            f"{it.name}: no verified training data ({len(passed)} of {len(verified)} "
            f"trajectories passed every gate; the forced-share cap is {cap:.2f}); the report "
            "lists the gate failures by reason, and `tooldojo verify --explain` shows each"
        )
    role_counts = {
        role: sum(t.metadata.get("role") == role for t in roles) for role in TRAINED_ROLES
    }
    _write_json(
        it / "pool.json",
        sampling
        | {
            "carried": carried,
            "role_samples": role_counts,
            "accounting": {"passed": accounting(passed), "train_new": accounting(admitted)},
            "assistant_call_turns": {
                "synthesized": call_turn_origins(verified),
                "train_new": call_turn_origins(admitted),
            },
        },
    )
    write_jsonl_atomic(it / "train_data.jsonl", train)
    write_jsonl_atomic(it / "heldout.jsonl", heldout)
    return {
        "train": len(train),
        "heldout": len(heldout),
        "carried": carried,
        "forced_rejected": sampling["forced_rejected"],
        "role_samples": len(roles),
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
        accuracy_table(read_jsonl(folder / "probe.jsonl", ProbeRecord), sample=counts),
    )
    return counts


def _judge(context: _Context, it: Path) -> dict[str, int]:
    from tooldojo.loop.judge import run_judge
    from tooldojo.verify.pipeline import VerifyOptions

    cfg = context.cfg.judge
    judges = [context.model_for(name) for name in cfg.judges]
    pool = list(read_jsonl(it / "train_data.jsonl", Trajectory))
    out = it / "judged.jsonl"
    with context.bar(f"{it.name} judge", None) as advance:
        counts = context.run(
            lambda: run_judge(
                judges,
                it / "probe.jsonl",
                pool,
                out,
                max_cases=cfg.max_cases,
                samples=cfg.samples,
                temperature=cfg.temperature,
                gates=VerifyOptions(gates=context.cfg.verify.gates),
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


# --- figures for the report ----------------------------------------------------------------


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {origin: (n / total if total else 0.0) for origin, n in counts.items()}


def _role_pass_rates(verified: list[Trajectory]) -> dict[str, dict[str, float | int]]:
    """Per role: of the trajectories in which that role wrote at least one turn itself
    (origin ``model``), how many passed every gate — how often its own output survives."""
    from tooldojo.verify.accounting import ROLES, trajectory_origins

    out: dict[str, dict[str, float | int]] = {}
    for role in ROLES:
        mine = [
            t
            for t in verified
            if any(m.role == role and o == "model" for m, o in trajectory_origins(t))
        ]
        passed = sum(bool(t.passed) for t in mine)
        out[role] = {
            "trajectories": len(mine),
            "passed": passed,
            "pass_rate": passed / len(mine) if mine else 0.0,
        }
    return out


def _expansion_outcomes(prev: Path, it: Path) -> dict[str, dict[str, Any]]:
    """How the previous iteration's expansions fared here, per error class: played,
    passed verification, probed turns and their accuracy."""
    from tooldojo.loop.probe import ProbeRecord

    origin: dict[str, str] = {}
    for scenario in read_jsonl(prev / "expanded.jsonl", Scenario):
        edde = scenario.metadata.get("edde") or {}
        origin[scenario.id] = str(edde.get("error_class") or "unknown")
    table: dict[str, dict[str, Any]] = {
        cls: {"scenarios": 0, "played": 0, "passed": 0, "probed": 0, "correct": 0}
        for cls in sorted(set(origin.values()))
    }
    for cls in origin.values():
        table[cls]["scenarios"] += 1
    trajectory_class: dict[str, str] = {}
    for trajectory in read_jsonl(it / "verified.jsonl", Trajectory):
        cls = origin.get(trajectory.scenario_id or "")
        if cls is None:
            continue
        trajectory_class[trajectory.id] = cls
        table[cls]["played"] += 1
        table[cls]["passed"] += bool(trajectory.passed)
    if (it / "probe.jsonl").is_file():
        for record in read_jsonl(it / "probe.jsonl", ProbeRecord):
            cls = trajectory_class.get(record.trajectory_id)
            if cls is not None:
                table[cls]["probed"] += 1
                table[cls]["correct"] += record.correct
    for row in table.values():
        row["accuracy"] = row["correct"] / row["probed"] if row["probed"] else None
    return table


def _stats(context: _Context, it: Path, prev: Path | None) -> dict[str, int]:
    """``loop_stats.json``: the iteration's figures per role, for the report."""
    from tooldojo.loop.judge import JudgedRecord, judge_counts
    from tooldojo.verify.accounting import normalize_roles

    verified = list(read_jsonl(it / "verified.jsonl", Trajectory))
    synthesized = normalize_roles(json.loads((it / "accounting.json").read_text()))
    pool = json.loads((it / "pool.json").read_text())
    train_new = normalize_roles(pool["accounting"]["train_new"])
    probe = json.loads((it / "probe_summary.json").read_text())
    expanded: dict[str, int] = {}
    for scenario in read_jsonl(it / "expanded.jsonl", Scenario):
        cls = str((scenario.metadata.get("edde") or {}).get("error_class") or "unknown")
        expanded[cls] = expanded.get(cls, 0) + 1
    calls = pool["assistant_call_turns"]
    stats = {
        "iteration": int(it.name.split("-")[1]),
        "selfplay_roles": list(context.cfg.selfplay.roles) if prev is not None else [],
        "forced_cap": context.cfg.selfplay.forced_cap(int(it.name.split("-")[1])),
        "roles": {
            role: {
                "synthesized": counts,
                "shares": _shares(counts),
                "train_new_shares": _shares(train_new.get(role, {})),
            }
            for role, counts in synthesized.items()
        },
        "assistant_call_turns": {
            key: {"counts": value, "shares": _shares(value)} for key, value in calls.items()
        },
        "gate_pass_rate": (sum(bool(t.passed) for t in verified) / len(verified))
        if verified
        else 0.0,
        "gate_pass_rate_by_role": _role_pass_rates(verified),
        "probe": {key: probe.get(key, {}) for key in ("kind", "decision", "error_class", "sample")},
        "judge": judge_counts(read_jsonl(it / "judged.jsonl", JudgedRecord)),
        "expanded": expanded,
        "previous_expansions": _expansion_outcomes(prev, it) if prev is not None else {},
        "pool": {key: value for key, value in pool.items() if key != "accounting"},
    }
    _write_json(it / "loop_stats.json", stats)
    return {"verified": len(verified), "expanded": sum(expanded.values())}


def selfplay_record(root: Path) -> dict[str, Any]:
    """Per iteration and role: own, forced and templated shares, gate pass rates, and the
    held-out call-turn and no-call accuracy (the base model's too) — ``selfplay.json``."""
    from tooldojo.verify.accounting import normalize_roles

    record: dict[str, Any] = {"iterations": []}
    base = root / "base" / "probe_summary.json"
    if base.is_file():
        kinds = json.loads(base.read_text()).get("kind", {})
        record["base"] = {
            "heldout_call_accuracy": kinds.get("heldout/call", {}).get("accuracy"),
            "heldout_no_call_accuracy": kinds.get("heldout/no_call", {}).get("accuracy"),
        }
    for folder in sorted(root.glob("iter-[0-9][0-9][0-9]")):
        path = folder / "loop_stats.json"
        if not path.is_file():
            continue
        stats = json.loads(path.read_text())
        kinds = stats["probe"].get("kind", {})
        record["iterations"].append(
            {
                "iteration": stats["iteration"],
                "selfplay_roles": stats["selfplay_roles"],
                "forced_cap": stats["forced_cap"],
                "roles": {
                    role: {
                        "own": row["shares"].get("model", 0.0),
                        "forced": row["shares"].get("forced", 0.0),
                        "template": row["shares"].get("template", 0.0),
                        "executed": row["shares"].get("executed", 0.0),
                        "gate_pass_rate": normalize_roles(stats["gate_pass_rate_by_role"])
                        .get(role, {})
                        .get("pass_rate"),
                    }
                    for role, row in normalize_roles(stats["roles"]).items()
                },
                "assistant_call_turns_own": stats["assistant_call_turns"]["synthesized"][
                    "shares"
                ].get("model", 0.0),
                "gate_pass_rate": stats["gate_pass_rate"],
                "heldout_call_accuracy": kinds.get("heldout/call", {}).get("accuracy"),
                "heldout_no_call_accuracy": kinds.get("heldout/no_call", {}).get("accuracy"),
            }
        )
    return record
