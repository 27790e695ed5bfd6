"""Resume bookkeeping: each stage runs, or is skipped, by what the manifest recorded of it.

A stage is declared as a :class:`StagePlan` (files relative to its iteration folder);
:func:`run_plan` turns its input files, models and config values into the hashes
:func:`tooldojo.loop.rundir.stage_inputs` records, and :func:`run_stage` skips it when those
inputs and its outputs are unchanged, redoes it from scratch when the inputs changed, and
otherwise runs it (see :mod:`tooldojo.loop.rundir`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooldojo.loop._context import LoopContext, StopLoop
from tooldojo.loop.rundir import model_identity, stage_inputs


@dataclass(frozen=True)
class StagePlan:
    """One stage of an iteration: the work it runs and the inputs its manifest record holds.

    File names are relative to the iteration folder (``../iter-000/...`` for the previous
    one, ``../base/...`` for the starting model's)."""

    name: str
    work: Callable[[], dict | None]
    files: list[str] = field(default_factory=list)
    """Input files: a change in one redoes the stage."""
    models: dict[str, str] = field(default_factory=dict)
    """Models it reads (a checkpoint folder is hashed, an alias kept as is)."""
    values: dict[str, Any] = field(default_factory=dict)
    """Config sections and other values it depends on."""
    outputs: list[str] = field(default_factory=list)
    """What it writes; hashed when it is done."""
    clears: list[str] = field(default_factory=list)
    """Further files and folders a redo removes first."""


def run_stage(
    context: LoopContext,
    key: str,
    work: Callable[[], dict | None],
    *,
    outputs: list[Path],
    inputs: dict[str, str],
    clears: Sequence[Path] = (),
) -> None:
    """Run ``work`` as stage ``key`` unless it is done with these ``inputs``; then stop the
    loop there if the request says so (``stop_after``, a testing aid)."""
    if context.rundir.is_done(key, inputs):
        context.say(f"{key}: done, skipped")
    else:
        stale = context.rundir.stale(key, inputs)
        context.say(f"{key}: {'inputs changed, redoing' if stale else 'running'}")
        context.rundir.run_stage(key, work, inputs=inputs, outputs=outputs, clears=list(clears))
    if context.request.stop_after == key:
        raise StopLoop(key)


def run_plan(context: LoopContext, it: Path, plan: Sequence[StagePlan]) -> None:
    """Run (or skip) each stage of iteration folder ``it`` in order."""

    def paths(names: list[str]) -> list[Path]:
        return [Path(os.path.normpath(it / name)) for name in names]

    for stage in plan:
        run_stage(
            context,
            f"{it.name}/{stage.name}",
            stage.work,
            inputs=stage_inputs(
                paths(stage.files),
                root=context.rundir.root,
                models=stage.models,
                **stage.values,
            ),
            outputs=paths(stage.outputs),
            clears=paths(stage.clears),
        )


def spec_hashes(specs: list[str]) -> dict[str, str]:
    """Each spec file's content hash (a reference as is): the synth stage's input."""
    return {spec: model_identity(spec) for spec in sorted(specs)}
