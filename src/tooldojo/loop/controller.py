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
    runs/<name>/headline/{base,final}/      loop.final_eval: full BFCL, first and last model
    runs/<name>/headline.json               its table, recounted (tooldojo.eval.headline)
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

One file per concern, so a stage reads on its own: ``_plan`` (the stages of an iteration and
the inputs each records), ``_resume`` (run, skip or redo a stage), ``_context`` (the request,
the run directory, the role models), and one runner per stage: ``_stage_synth``,
``_stage_pool`` (verify and pool), ``_stage_train``, ``_stage_probe``, ``_stage_judge``
(judge, expand, weights), ``_stage_eval`` and ``_stage_stats`` (``loop_stats.json``,
``selfplay.json``). This module sequences them and keeps the public names.
"""

from __future__ import annotations

from tooldojo.errors import ToolDojoError
from tooldojo.loop._context import (
    ROLE_NAMES,
    LoopContext,
    LoopRequest,
    NothingToTrain,
    StopLoop,
    selfplay_loader,
    write_json,
)
from tooldojo.loop._plan import iteration_plan
from tooldojo.loop._resume import run_plan, run_stage
from tooldojo.loop._stage_eval import eval_stage, final_eval
from tooldojo.loop._stage_pool import is_heldout
from tooldojo.loop._stage_probe import probe_model
from tooldojo.loop._stage_stats import selfplay_record
from tooldojo.loop.rundir import RunDir, stage_inputs

__all__ = [
    "ROLE_NAMES",
    "LoopRequest",
    "NothingToTrain",
    "StopLoop",
    "is_heldout",
    "probe_model",
    "run_loop",
    "selfplay_record",
]


def run_loop(request: LoopRequest) -> RunDir:
    """Run (or resume) ``request.iterations`` iterations; returns the run directory."""
    if request.iterations < 1:
        raise ToolDojoError("--iterations must be at least 1")
    if not request.specs and not request.config.synth.executor.startswith("python:"):
        raise ToolDojoError(
            "give at least one --specs file (or a python: executor in the "
            "loop.synth section of the config)"
        )
    if request.selfplay_loader is None:
        selfplay_loader(request)  # a bad loop.selfplay.serve_with fails now, not hours later
    config = {"specs": sorted(request.specs), "loop": request.config.model_dump()}
    rundir = RunDir(request.run, config=config, seed=request.config.seed)
    context = LoopContext(request, rundir)
    if request.config.eval.baseline:
        run_stage(
            context,
            "base/eval",
            lambda: eval_stage(context, request.config.model, rundir.root / "base" / "eval"),
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
    if request.config.final_eval.enabled:  # the headline: full BFCL, base and final model
        final_eval(context)
    write_json(rundir.root / "selfplay.json", selfplay_record(rundir.root))
    from tooldojo.report import write_report

    write_report(rundir.root)
    return rundir


def _iteration(context: LoopContext, k: int) -> None:
    """Run (or skip) iteration ``k``'s stages, then re-make the report."""
    it = context.rundir.iteration_dir(k)
    run_plan(context, it, iteration_plan(context, k))
    from tooldojo.report import write_report

    write_report(context.rundir.root)
    context.say(f"{it.name}: report at {context.rundir.root / 'report.html'}")
