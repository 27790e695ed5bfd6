"""The synthesis stage end to end: specs → plan (``scenarios.jsonl``) → ``trajectories.jsonl``.

The output folder is a resumable unit: the plan is written once (atomically) and reused by a
re-run with the same options, finished episodes are skipped, and ``manifest.json`` records the
spec sources (with content hashes), the options and the models per role.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from tooldojo.agents.guidance import GUIDANCE
from tooldojo.agents.user import DEFAULT_TEMPLATE_CAP
from tooldojo.bfcl_guard import GuardHit, GuardMode, enforce_tools, guard_mode
from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, drop_partial_tail, read_jsonl, write_json_atomic
from tooldojo.llm.base import ChatModel, SamplingParams, aclose_models
from tooldojo.llm.faults import fault_counts
from tooldojo.model import RunManifest, Scenario, Tool, utc_now
from tooldojo.synth.environment import build_tool_server, in_memory_connect, refuse_bfcl_inputs
from tooldojo.synth.interrupt import until_sigterm
from tooldojo.synth.plan_file import PlanFile
from tooldojo.synth.runner import (
    SCENARIOS,
    TRAJECTORIES,
    Outcome,
    SynthSummary,
    category_mix,
    finished_ids,
    synth_to_dir,
)

MANIFEST = "manifest.json"
MANIFEST_EVERY_S = 60.0
"""While episodes run, the manifest's wall time is brought up to date at most this often."""


@dataclass
class SynthRequest:
    """Everything ``tooldojo synth`` was asked to do."""

    specs: list[str]
    n: int
    out: Path
    categories: list[str] = field(default_factory=list)
    concurrency: int = 4
    config: Path | None = Path("tooldojo.yaml")
    executor: str = "simulated"
    seed: int = 0
    min_per_tool: int = 1
    max_steps: int = 6
    values: str = "model"
    weights: dict[str, Any] = field(default_factory=dict)
    dedup: float = 0.9
    constrain: bool = True
    guidance: str = "kind"
    """none | kind | label: see :mod:`tooldojo.agents.guidance`."""
    failure_rate: float = 0.0
    max_failures: int = 10
    retries: int = 2
    """A failed episode (backend error, timeout) is played again this many times at once."""
    template_cap: float = DEFAULT_TEMPLATE_CAP
    """Most share of episodes whose user turn may come from a template when the user model
    cannot write it; above it the scenario is dropped (see :mod:`tooldojo.agents.user`)."""
    bfcl_guard: GuardMode | None = None
    """``refuse`` or ``warn`` on BFCL content (tools, user messages); ``None``: the
    ``bfcl_guard:`` key of ``config`` (``refuse`` when absent)."""

    def guard_mode(self) -> GuardMode:
        return self.bfcl_guard or guard_mode(self.config)

    models: dict[str, ChatModel] | None = None
    """Role → model, bypassing ``config`` (tests and embedding applications)."""

    def plan_key(self) -> dict[str, Any]:
        """The options a plan depends on: a re-run must match them to reuse the plan."""
        return {
            "specs": sorted(self.specs),
            "n": self.n,
            "seed": self.seed,
            "categories": self.categories,
            "min_per_tool": self.min_per_tool,
            "values": self.values,
            "weights": self.weights,
            "executor": self.executor,
        }


PARTIAL_PLAN = "scenarios.jsonl.partial"
PARTIAL_PLAN_KEY = "plan.partial.json"


def _interrupted_plan(out: Path, plan_key: dict[str, Any]) -> list[Scenario]:
    """The scenarios an interrupted plan of the same options wrote to ``out`` (none when it
    left nothing); an error when they were planned with other options."""
    partial, key_file = out / PARTIAL_PLAN, out / PARTIAL_PLAN_KEY
    if not partial.exists() or not key_file.exists():
        partial.unlink(missing_ok=True)
        return []
    if json.loads(key_file.read_text("utf-8")) != json.loads(json.dumps(plan_key, sort_keys=True)):
        raise ToolDojoError(
            f"{partial} holds part of a plan made with other options; re-run with the same "
            "options to finish it, or use a new --out"
        )
    drop_partial_tail(partial)  # a scenario cut off mid-line by the kill
    return list(read_jsonl(partial, Scenario))


@dataclass
class PreparedRun:
    request: SynthRequest
    tools: list[Tool]
    scenarios: PlanFile
    """Read from ``scenarios.jsonl`` as needed; ``extend`` adds scenarios (expansions)."""
    env: Any
    warnings: list[str]
    reused_plan: bool
    manifest: RunManifest
    owned_models: list[ChatModel] = field(default_factory=list)
    """Models :func:`prepare_run` loaded itself (not handed in): :meth:`aclose` closes them."""
    role_models: dict[str, ChatModel] = field(default_factory=dict)
    """The model of each role (for the injected-fault counts in the manifest)."""
    bfcl_tool_hits: list[GuardHit] = field(default_factory=list)
    """Tools recognised as BFCL's and kept because ``bfcl_guard`` is ``warn``."""

    async def aclose(self) -> None:
        """Close the HTTP connections of the models this run loaded (on the loop that used them)."""
        await aclose_models(self.owned_models)

    def pending_count(self) -> int:
        done = finished_ids(self.request.out)
        return sum(1 for entry in self.scenarios.entries() if entry.id not in done)


def _role_sampling(config: Any, role: str) -> SamplingParams | None:
    """The role's sampling from ``tooldojo.yaml`` only when the file sets it explicitly."""
    entry = config.roles.get(role) if config is not None else None
    if entry is None or isinstance(entry, str) or not entry.sampling.model_fields_set:
        return None
    return entry.sampling


def _load_models(request: SynthRequest) -> tuple[dict[str, ChatModel], Any]:
    if request.models is not None:
        return request.models, None
    from tooldojo.llm.config import load_config, load_role_models

    config = load_config(request.config)
    roles = ("user", "assistant") + (("server",) if request.executor == "simulated" else ())
    return load_role_models(config, roles), config


def _digest(path: str) -> str:
    target = Path(path)
    if not target.is_file():
        return ""
    return hashlib.sha256(target.read_bytes()).hexdigest()


async def prepare_run(
    request: SynthRequest, on_planned: Callable[[Scenario], None] | None = None
) -> PreparedRun:
    """Load tools and models, build the server, and plan (or reuse the plan in ``out``).

    ``on_planned`` sees each scenario as it is planned (drafting values with a model takes a
    while: progress for the command line).
    """
    from tooldojo.agents.assistant import AssistantAgent
    from tooldojo.agents.user import UserSimulator
    from tooldojo.synth.episode import EpisodeEnv
    from tooldojo.synth.labels import ArgumentDrafter
    from tooldojo.synth.planner import Planner, PlanOptions

    refuse_bfcl_inputs(request.specs, request.executor)
    if request.guidance not in GUIDANCE:
        raise ToolDojoError(f"--guidance must be one of {', '.join(GUIDANCE)}")
    if request.concurrency < 1:
        raise ToolDojoError("--concurrency must be at least 1")
    if request.max_steps < 1:
        raise ToolDojoError("--max-steps must be at least 1")
    tools: list[Tool] = []
    if request.specs:
        from tooldojo.specs import load_tools

        # In a worker thread: a live MCP spec (stdio:/URL) lists its tools on an event loop of
        # its own, which cannot run inside this one.
        tools = await anyio.to_thread.run_sync(load_tools, request.specs)
    if not tools and not request.executor.startswith("python:"):
        raise ToolDojoError(
            "the tool registry is empty: give --specs files that define tools "
            "(or --executor python:MODULE)"
        )
    # By content, whatever path the tools came by (a live MCP server serving BFCL's pack, a
    # renamed copy of BFCL's docs): refused before any model is loaded...
    spec_hits = enforce_tools(tools, request.guard_mode(), "synthesis tools")
    models, config = _load_models(request)
    server, tools = build_tool_server(
        tools,
        request.executor,
        server_model=models.get("server"),
        server_sampling=_role_sampling(config, "server"),
        failure_rate=request.failure_rate,
        seed=request.seed,
    )
    if not tools:
        raise ToolDojoError("the tool registry is empty: nothing to synthesize")
    # ...and the served tools too (a python:bfcl_eval executor derives its own), before any
    # planning.
    served_hits = enforce_tools(
        [tool for tool in tools if tool.name not in {hit.subject for hit in spec_hits}],
        request.guard_mode(),
        "synthesis tools",
    )
    tool_hits = spec_hits + served_hits

    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    plan_key = request.plan_key()
    warnings: list[str] = []
    reused = False
    if (out / SCENARIOS).exists() and manifest_path.exists():
        manifest = RunManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        if manifest.config.get("plan") != plan_key:
            raise ToolDojoError(
                f"{out} holds a plan made with other options; re-run with the same options "
                "to resume, or use a new --out"
            )
        PlanFile(out / SCENARIOS).check()
        reused = True
    else:
        planned = _interrupted_plan(out, plan_key)
        weights = request.weights
        drafter = ArgumentDrafter(models.get("user") if request.values == "model" else None)
        planner = Planner(
            tools,
            PlanOptions(
                n=request.n,
                seed=request.seed,
                mix=category_mix(request.categories),
                category_weights=weights.get("categories", {}),
                tool_weights=weights.get("tools", {}),
                domain_weights=weights.get("domains", {}),
                min_per_tool=request.min_per_tool,
                concurrency=request.concurrency,
            ),
            drafter,
        )
        # Streamed to a partial file, one fsynced line per scenario: a kill keeps what was
        # planned, and the next run with the same options plans only the rest.
        partial = out / PARTIAL_PLAN
        (out / PARTIAL_PLAN_KEY).write_text(json.dumps(plan_key, sort_keys=True), "utf-8")
        async for scenario in planner.scenarios(planned):
            append_jsonl(partial, [scenario])
            if on_planned is not None:
                on_planned(scenario)
        partial.touch()
        warnings = planner.warnings
        manifest = RunManifest(
            name=out.name,
            seed=request.seed,
            config={
                "plan": plan_key,
                "spec_sources": {path: _digest(path) for path in request.specs},
                "models": {role: model.name for role, model in models.items()},
                "max_steps": request.max_steps,
                "template_cap": request.template_cap,
                "constrain": request.constrain,
                "guidance": request.guidance,
            },
            versions=_versions(),
        )
        stage = manifest.stage("synth")
        stage.inputs = {path: _digest(path) for path in request.specs}
        _write_manifest(manifest_path, manifest)
        # The plan is whole only now: the manifest first, so a kill between the two steps
        # leaves a partial plan that resumes (with nothing left to plan), never a plan that
        # looks whole without its manifest.
        partial.replace(out / SCENARIOS)
        (out / PARTIAL_PLAN_KEY).unlink(missing_ok=True)
    scenarios = PlanFile(out / SCENARIOS)

    env = EpisodeEnv(
        tools={tool.name: tool for tool in tools},
        user=UserSimulator(
            models["user"],
            sampling=_role_sampling(config, "user"),
            template_cap=request.template_cap,
        ),
        assistant=AssistantAgent(
            models["assistant"],
            sampling=_role_sampling(config, "assistant"),
            constrain=request.constrain,
            guidance=request.guidance,  # type: ignore[arg-type]
        ),
        connect=in_memory_connect(server),
        max_steps=request.max_steps,
        models={role: model.name for role, model in models.items()},
        end_episode=server.episodes.end,
    )
    owned = [] if request.models is not None else list({id(m): m for m in models.values()}.values())
    return PreparedRun(
        request, tools, scenarios, env, warnings, reused, manifest, owned, dict(models), tool_hits
    )


async def run_prepared(
    prepared: PreparedRun, on_outcome: Callable[[Outcome], None] | None = None
) -> SynthSummary:
    """Play the prepared run's pending scenarios and record the stage in the manifest."""
    engines_before = engine_counters(prepared.role_models)
    episodes_started = time.perf_counter()
    account = start_stage(prepared)
    flushed = [episodes_started]

    def outcome(result: Outcome) -> None:
        if on_outcome is not None:
            on_outcome(result)
        if time.perf_counter() - flushed[0] >= MANIFEST_EVERY_S:  # a SIGKILL loses no more
            flushed[0] = time.perf_counter()
            account()
            write_manifest(prepared)

    try:
        summary = await play_until_sigterm(prepared, on_outcome=outcome)
    except BaseException as error:
        account()
        mark_interrupted(prepared, error)
        raise
    account()
    engines = engine_work(
        engines_before,
        engine_counters(prepared.role_models),
        time.perf_counter() - episodes_started,
    )
    faults = fault_counts(prepared.role_models)
    hits = [hit.to_dict() for hit in [*prepared.bfcl_tool_hits, *summary.bfcl_hits]]
    finish_stage(prepared, summary, engines=engines, faults=faults, hits=hits)
    return summary


async def play_until_sigterm(
    prepared: PreparedRun,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    share: tuple[int, int] | None = None,
) -> SynthSummary:
    """The run's pending episodes (of worker ``share`` only, when given) with the request's
    options, stopped by SIGTERM as by an error (:func:`until_sigterm`)."""
    request = prepared.request
    return await until_sigterm(
        lambda: synth_to_dir(
            request.out,
            prepared.scenarios,
            prepared.env,
            concurrency=request.concurrency,
            dedup_threshold=request.dedup or None,
            max_consecutive_failures=request.max_failures,
            on_outcome=on_outcome,
            retries=request.retries,
            bfcl_guard=request.guard_mode(),
            share=share,
        )
    )


def start_stage(prepared: PreparedRun) -> Callable[[], None]:
    """Mark the synth stage running in the manifest (one more session of it) and return the
    function that brings its wall time up to date: the episodes' time over every session of
    a resumed run (StageRecord keeps extra keys), planning and model loading left out."""
    stage = prepared.manifest.stage("synth")
    stage.status = "running"
    stage.started_at = utc_now()
    started = time.perf_counter()
    spent_before = float(getattr(stage, "wall_seconds", 0.0) or 0.0)
    stage.sessions = int(getattr(stage, "sessions", 0) or 0) + 1  # type: ignore[attr-defined]

    def account() -> None:
        stage.wall_seconds = round(spent_before + time.perf_counter() - started, 1)  # type: ignore[attr-defined]

    account()
    write_manifest(prepared)
    return account


def write_manifest(prepared: PreparedRun) -> None:
    _write_manifest(prepared.request.out / MANIFEST, prepared.manifest)


def mark_interrupted(prepared: PreparedRun, error: BaseException) -> None:
    """Cancelled, stopped by SIGTERM or by an exception: what finished is on disk; say so in
    the manifest (written atomically, no await: a cancel cannot cut it short)."""
    stage = prepared.manifest.stage("synth")
    stage.status = "failed"
    stage.error = f"interrupted ({type(error).__name__}); finished episodes are kept"
    write_manifest(prepared)


def finish_stage(
    prepared: PreparedRun,
    summary: SynthSummary,
    *,
    engines: dict[str, dict[str, float]],
    faults: dict[str, Any],
    hits: list[dict[str, str]],
) -> None:
    """Record the finished stage in the manifest: status, counts per outcome, BFCL hits, the
    engines' work, the output's hash and who wrote the turns."""
    request = prepared.request
    stage = prepared.manifest.stage("synth")
    stage.finished_at = utc_now()
    incomplete = summary.aborted or summary.total("failed")
    stage.status = "failed" if incomplete else "done"
    failed = summary.total("failed")
    stage.error = summary.aborted or (
        f"{failed} episode(s) failed (retried on resume); first: {summary.errors[0]}"
        if failed and summary.errors
        else None
    )
    stage.counts = {
        name: summary.total(name)
        for name in ("planned", "finished", "failed", "dropped", "skipped", "retried")
    }
    stage.counts["bfcl_hits"] = len(hits)
    if hits:  # refused episodes are in dropped.jsonl; warned ones are listed here too
        stage.bfcl_guard = {  # type: ignore[attr-defined]  # StageRecord keeps extra keys
            "mode": request.guard_mode(),
            "hits": hits,
        }
    if faults:  # a soak run with injected faults: how many, of which kind, per role
        stage.faults = faults  # type: ignore[attr-defined]  # StageRecord keeps extra keys
    if engines:  # where the local engines' compute went while the episodes ran
        stage.engines = engines  # type: ignore[attr-defined]  # StageRecord keeps extra keys
    stage.outputs = {TRAJECTORIES: _digest(str(request.out / TRAJECTORIES))}
    stage.accounting = _accounting(request.out / TRAJECTORIES)  # who wrote the turns, per role
    write_manifest(prepared)


def engine_counters(models: dict[str, ChatModel]) -> dict[str, dict[str, float]]:
    """The counters of each local engine pool (a model with ``stats``, such as the llama.cpp
    backend), keyed by the roles it plays (``user+assistant+server`` when one model plays
    them all)."""
    roles: dict[int, list[str]] = {}
    found: dict[int, Any] = {}
    for role, model in models.items():
        stats = getattr(model, "stats", None)
        if dataclasses.is_dataclass(stats):
            roles.setdefault(id(model), []).append(role)
            found[id(model)] = stats
    return {"+".join(roles[key]): dataclasses.asdict(found[key]) for key in found}


def engine_work(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], seconds: float
) -> dict[str, dict[str, float]]:
    """What each engine pool did between two :func:`engine_counters` snapshots: its counters'
    differences, the tokens it computed (prompt tokens not reused, plus generated ones) and
    those per second of the episodes' wall time, so a run shows whether its time went to
    useful tokens (compare with the compute limit of ``bench/embedded_throughput.py``)."""
    out = {}
    for key, counters in after.items():
        start = before.get(key, {})
        work = {name: value - start.get(name, 0) for name, value in counters.items()}
        computed = work["prompt_tokens"] - work["reused_tokens"] + work["generated_tokens"]
        work["computed_tokens"] = computed
        work["computed_tokens_per_s"] = round(computed / seconds, 1) if seconds > 0 else 0.0
        work["generated_tokens_per_s"] = (
            round(work["generated_tokens"] / seconds, 1) if seconds > 0 else 0.0
        )
        work["decode_seconds"] = round(work["decode_seconds"], 1)
        out[key] = work
    return out


def _accounting(path: Path) -> dict[str, Any]:
    from tooldojo.jsonl import read_jsonl
    from tooldojo.model import Trajectory
    from tooldojo.verify.accounting import accounting

    return accounting(read_jsonl(path, Trajectory)) if path.exists() else {}


def _write_manifest(path: Path, manifest: RunManifest) -> None:
    write_json_atomic(path, manifest.model_dump(mode="json"))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("tooldojo", "mcp", "llama-cpp-python"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def synth_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a synthesis folder, as JSON data."""
    return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
