"""The verify and pool stages: gate the trajectories, then build the training pool (rejection
sampled by forced share, plus the last iteration's hard samples and corrections) and the
held-out split (a stable hash of the scenario id, so it never changes across re-runs)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import anyio

from tooldojo.jsonl import existing_ids, read_jsonl, write_jsonl_atomic
from tooldojo.loop._context import LoopContext, NothingToTrain, write_json
from tooldojo.model import Trajectory


def verify_stage(context: LoopContext, it: Path) -> dict[str, int]:
    """``verified.jsonl``: every trajectory with the verdicts of ``loop.verify.gates``."""
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


def is_heldout(scenario_id: str | None, fraction: float) -> bool:
    """Stable split: the same scenario id always lands on the same side."""
    if not scenario_id or fraction <= 0:
        return False
    value = int(hashlib.sha256(scenario_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return value < fraction


def pool_stage(context: LoopContext, it: Path, prev: Path | None, k: int) -> dict[str, int]:
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
    replay: list[Trajectory] = []
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
        replay = _replay(
            list(previous_pool.values()),
            round(context.cfg.selfplay.replay * (len(admitted) + len(roles))),
            seed=context.cfg.seed * 1000 + k,
        )
        train += replay
    from tooldojo.bfcl_guard import check_training_rows, guard_mode, row_id_of

    bfcl_hits = check_training_rows(train)  # BFCL content, whatever path it came by
    if bfcl_hits and guard_mode(context.request.config_path) == "refuse":
        refused = {row_id_of(hit) for hit in bfcl_hits}
        train = [t for t in train if t.id not in refused]
    for hit in bfcl_hits:
        context.say(f"{it.name}: BFCL guard: {hit}")
    # The shared contract: {role: {origin: n}} over everything this iteration synthesized.
    write_json(it / "accounting.json", accounting(verified))
    if not train:
        raise NothingToTrain(
            f"{it.name}: no verified training data ({len(passed)} of {len(verified)} "
            f"trajectories passed every gate; the forced-share cap is {cap:.2f}); the report "
            "lists the gate failures by reason, and `tooldojo verify --explain` shows each"
        )
    role_counts = {
        role: sum(t.metadata.get("role") == role for t in roles) for role in TRAINED_ROLES
    }
    write_json(
        it / "pool.json",
        sampling
        | {
            "carried": carried,
            "replayed": len(replay),
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
        "replayed": len(replay),
        "forced_rejected": sampling["forced_rejected"],
        "role_samples": len(roles),
        "bfcl_hits": len(bfcl_hits),
    }


def _replay(previous: list[Trajectory], count: int, *, seed: int) -> list[Trajectory]:
    """``count`` trajectories of the last pool, drawn at random without replacement (all of it
    when it holds fewer), in the pool's order so the training file stays stable."""
    if count >= len(previous):
        return previous
    chosen = set(random.Random(seed).sample(range(len(previous)), count))
    return [t for i, t in enumerate(previous) if i in chosen]
