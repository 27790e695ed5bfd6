"""The synth stage: plan this iteration's scenarios (weighted by the last iteration, plus its
expansions) and role-play them; from iteration 1 on the last checkpoint plays the self-play
roles."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import read_jsonl
from tooldojo.loop._context import LoopContext
from tooldojo.model import Scenario


def synth_stage(context: LoopContext, it: Path, prev: Path | None, k: int) -> dict[str, int]:
    """``scenarios.jsonl`` and ``trajectories.jsonl``; failed episodes leave it incomplete."""
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


IMPORTED_FILES = ("scenarios.jsonl", "trajectories.jsonl", "dropped.jsonl", "manifest.json")
"""What a ``tooldojo synth --out`` folder holds, and what iteration 0 copies from one."""


def import_synth_stage(source: Path, it: Path, *, partial: bool = False) -> dict[str, int]:
    """Iteration 0's ``trajectories.jsonl`` (and its plan, drops and manifest) copied from the
    finished synthesis run in ``source`` (``loop.synth.first_from``).

    Only a finished run is taken unless ``partial``: a run still under way (or stopped by a
    kill) would freeze a partial sample into the loop, so it is refused with the way to finish
    it. With ``partial`` it is taken as it stands, and the counts say so (``partial: 1``). Each
    file lands whole (copied beside, then renamed), so a kill mid-copy leaves nothing
    half-written."""
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise ToolDojoError(
            f"{manifest_path}: not found; loop.synth.first_from must name a "
            "'tooldojo synth --out' folder"
        )
    try:
        record = json.loads(manifest_path.read_text("utf-8"))["stages"]["synth"]
        status = record["status"]
    except (ValueError, KeyError, TypeError) as error:
        raise ToolDojoError(f"{manifest_path}: no synth stage record ({error!r})") from error
    if status != "done" and not partial:
        raise ToolDojoError(
            f"{manifest_path}: the synthesis is {status}, not done; finish it by running the "
            "same 'tooldojo synth' command again, then resume the loop (or set "
            "loop.synth.first_from_partial to take it as it stands)"
        )
    it.mkdir(parents=True, exist_ok=True)
    for name in IMPORTED_FILES:
        if (source / name).is_file():
            partial = it / f"{name}.partial"
            shutil.copyfile(source / name, partial)
            os.replace(partial, it / name)
    counts = {
        "planned": _lines(it / "scenarios.jsonl"),
        "finished": _lines(it / "trajectories.jsonl"),
        "dropped": _lines(it / "dropped.jsonl"),
    }
    return counts | {"imported": 1} | ({"partial": 1} if status != "done" else {})


def _lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
