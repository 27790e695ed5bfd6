"""Error-driven data expansion (LoopTool's EDDE): more of what the model gets wrong.

For each verified model error (the judge said the label stands), ``per_error`` new
scenarios exercise the same capability — same category, same tools on offer — with new
argument values, personas and phrasing, planned by synthesis' own planner (so they are
checked like any scenario) and played in the next iteration.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl
from tooldojo.loop.judge import JudgedRecord
from tooldojo.model import Scenario, Trajectory
from tooldojo.synth.labels import ArgumentDrafter
from tooldojo.synth.planner import PlanOptions, plan_scenarios


async def run_expand(
    judged_file: Path,
    pool: Iterable[Trajectory],
    out: Path,
    *,
    per_error: int,
    max_total: int,
    iteration: int,
    seed: int,
    drafter: ArgumentDrafter | None = None,
) -> dict[str, int]:
    """Plan new scenarios for each ``model_wrong`` decision into ``out`` (resumes by parent)."""
    by_id = {t.id: t for t in pool}
    done_parents = existing_ids(out, "parent_id")
    errors = [r for r in read_jsonl(judged_file, JudgedRecord) if r.decision == "model_wrong"]
    planned = len(existing_ids(out))
    for index, record in enumerate(errors):
        if planned >= max_total or per_error == 0:
            break
        if record.id in done_parents or record.trajectory_id not in by_id:
            continue
        source = by_id[record.trajectory_id]
        plan = await plan_scenarios(
            source.tools,
            PlanOptions(
                n=min(per_error, max_total - planned),
                seed=seed * 1000 + iteration * 100 + index,
                mix={source.category or "single": 1.0},
                min_per_tool=0,
                id_prefix=f"x{iteration:03d}-{index:03d}-",
                strict=False,
            ),
            drafter,
        )
        scenarios: list[Scenario] = [
            s.model_copy(
                update={
                    "parent_id": record.id,
                    "metadata": {**s.metadata, "expanded_from": record.id},
                }
            )
            for s in plan.scenarios[:per_error]
        ]
        append_jsonl(out, scenarios)
        planned += len(scenarios)
    return {"errors": len(errors), "scenarios": len(existing_ids(out))}
