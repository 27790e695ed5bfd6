"""The synth stage: plan this iteration's scenarios (weighted by the last iteration, plus its
expansions) and role-play them; from iteration 1 on the last checkpoint plays the self-play
roles."""

from __future__ import annotations

import json
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
