"""Figures for the report: ``loop_stats.json`` per iteration (per role: own, forced and
templated shares, gate pass rates; probe, judge and expansion figures) and the run's
``selfplay.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tooldojo.jsonl import iter_jsonl_dicts, read_jsonl
from tooldojo.loop._context import LoopContext, write_json
from tooldojo.model import Scenario, Trajectory


def _shares(counts: dict[str, int]) -> dict[str, float]:
    """Each origin's share of ``counts`` (all zero when there is nothing)."""
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


def stats_stage(context: LoopContext, it: Path, prev: Path | None) -> dict[str, int]:
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
    write_json(it / "loop_stats.json", stats)
    return {"verified": len(verified), "expanded": sum(expanded.values())}


def selfplay_record(root: Path) -> dict[str, Any]:
    """Per iteration and role: own, forced and templated shares, gate pass rates, and the
    held-out call-turn and no-call accuracy (the base model's too), also on the first
    iteration's held-out turns alone (``heldout_fixed``); per iteration the probe's
    errors by class, the judges' decisions (votes failed, disagreements, cases the gates
    decided and how often the judges agreed), the scenarios expanded per class and how the
    previous iteration's expansions fared — ``selfplay.json``."""
    from tooldojo.verify.accounting import normalize_roles

    record: dict[str, Any] = {"iterations": []}
    fixed = _first_heldout(root)
    base = root / "base" / "probe_summary.json"
    if base.is_file():
        kinds = json.loads(base.read_text()).get("kind", {})
        record["base"] = {
            "heldout_call_accuracy": kinds.get("heldout/call", {}).get("accuracy"),
            "heldout_no_call_accuracy": kinds.get("heldout/no_call", {}).get("accuracy"),
            **_counts(kinds),
            "heldout_fixed": _fixed_counts(root / "base" / "probe.jsonl", fixed),
            "bfcl": _bfcl_cells(root / "base" / "eval" / "bfcl.json"),
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
                **_counts(kinds),
                "assistant_call_turns": {
                    part: row.get("counts", {})
                    for part, row in stats["assistant_call_turns"].items()
                },
                "heldout_fixed": _fixed_counts(folder / "probe.jsonl", fixed),
                "probe_error_classes": stats["probe"].get("error_class", {}),
                "judge": stats.get("judge", {}),
                "expanded": stats.get("expanded", {}),
                "previous_expansions": stats.get("previous_expansions", {}),
                "bfcl": _bfcl_cells(folder / "eval" / "bfcl.json"),
            }
        )
    return record


def _first_heldout(root: Path) -> set[str]:
    """Ids of the held-out turns the first iteration probed. The held-out split grows each
    iteration, so its accuracy mixes item sets; on these turns every model is compared on the
    same items."""
    first = next(iter(sorted(root.glob("iter-[0-9][0-9][0-9]"))), None)
    path = first / "probe.jsonl" if first is not None else None
    if path is None or not path.is_file():
        return set()
    rows = (row for _, row in iter_jsonl_dicts(path))
    return {row["id"] for row in rows if row.get("split") == "heldout" and row.get("id")}


def _fixed_counts(path: Path, ids: set[str]) -> dict[str, dict[str, int]]:
    """``{call, no_call: {correct, total}}`` over the probe rows of ``path`` among ``ids``."""
    from tooldojo.report.examples import probe_kind

    out = {kind: {"correct": 0, "total": 0} for kind in ("call", "no_call")}
    if not path.is_file():
        return out
    for _, row in iter_jsonl_dicts(path):
        if row.get("split") == "heldout" and row.get("id") in ids:
            cell = out.get(probe_kind(row))
            if cell is not None:
                cell["total"] += 1
                cell["correct"] += bool(row.get("correct"))
    return out


def _counts(kinds: dict[str, Any]) -> dict[str, Any]:
    """The n behind each held-out accuracy: a rate over 2 turns reads very differently from
    one over 200."""
    return {
        f"heldout_{kind}": {
            key: kinds.get(f"heldout/{kind}", {}).get(key, 0) for key in ("correct", "total")
        }
        for kind in ("call", "no_call")
    }


def _bfcl_cells(path: Path) -> dict[str, dict[str, dict[str, int]]]:
    """``{mode: {category: {correct, total}}}`` of an evaluation's ``bfcl.json`` (empty
    when the stage has not run)."""
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    return {
        mode: {
            name: {"correct": cell["correct"], "total": cell["total"]}
            for name, cell in (result.get("categories") or {}).items()
        }
        for mode, result in summary.items()
        if isinstance(result, dict)
    }
