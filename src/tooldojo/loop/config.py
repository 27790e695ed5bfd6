"""The ``loop:`` section of ``tooldojo.yaml``: every size and switch of a closed-loop run.

The same file's ``backends``/``roles`` sections choose the models (see
:mod:`tooldojo.llm.config`); this section says how much of everything to do, so a run's
whole cost is set in one place.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tooldojo.errors import ToolDojoError
from tooldojo.verify.pipeline import DEFAULT_GATES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthSection(_Section):
    n: int = Field(40, ge=1)
    """Scenarios planned per iteration (expansions from failures come on top)."""
    heldout_fraction: float = Field(0.2, ge=0, lt=1)
    """Share of planned scenarios kept out of training for the held-out evaluation."""
    categories: list[str] = Field(default_factory=list)
    """Categories to plan (empty: all eight)."""
    min_per_tool: int = 1
    max_steps: int = 4
    concurrency: int = 16
    """Episodes in flight: the embedded backend batches them (2 engines x 8 sequences)."""
    executor: str = "simulated"
    values: Literal["model", "schema"] = "model"
    """How target argument values are drawn: by the model under constraint, or from the schema."""
    guidance: Literal["none", "kind", "label"] = "label"
    """What the synthesis assistant learns of the planned label (tooldojo.agents.guidance):
    ``label`` teacher-forces the steps it gets wrong — the cold start a model that cannot call
    tools yet needs; use ``none`` with a capable assistant model."""
    first_from: str | None = None
    """A finished ``tooldojo synth --out`` folder that iteration 0 takes its synthesized data
    from instead of synthesizing (its scenarios, trajectories, drops and manifest are copied
    in): a large cold-start synthesis, run and resumed on its own over hours, then looped on.
    The stage's inputs are that folder's files, so new data there redoes iteration 0; later
    iterations synthesize ``n`` scenarios as usual."""
    first_from_partial: bool = False
    """Take ``first_from`` as it stands when its synthesis is not done (still running, or
    stopped and not yet resumed), instead of refusing it: for a run that outlasts a machine's
    session. Its files stay the stage's inputs, so when the synthesis goes on, iteration 0 and
    everything after it are redone on the larger data."""


class VerifySection(_Section):
    gates: list[str] = Field(default_factory=lambda: list(DEFAULT_GATES))
    """Every gate by default: the content gates (execution, request, turns) are what keep
    failed results, filler and form-like requests out of training."""


class TrainSection(_Section):
    first: Literal["sft", "grpo"] = "sft"
    """Trainer of the first iteration (the cold start)."""
    then: Literal["sft", "grpo"] = "grpo"
    """Trainer of later iterations."""
    sft: dict[str, Any] = Field(default_factory=dict)
    """SFTSettings fields (see docs/train.md)."""
    grpo: dict[str, Any] = Field(default_factory=dict)
    """GRPOSettings fields."""


class ProbeSection(_Section):
    max_samples: int = Field(1000, ge=1)
    """Turns probed per split (training pool and held-out): the whole split when it has no
    more, else a sample of this size stratified by category and tool."""
    max_tokens: int = 256
    concurrency: int = 16
    """Turns in flight (batched on the embedded backend, as in synthesis)."""


class JudgeSection(_Section):
    judges: list[str] = Field(default_factory=lambda: ["judge"])
    """Roles or backend spec strings; all votes decide by strict majority."""
    samples: int = Field(2, ge=1)
    """Votes per judge on each case (the first greedy, the rest sampled)."""
    temperature: float = Field(0.7, ge=0)
    max_cases: int | None = Field(None, ge=1)
    """Cap on judged failures per iteration, spread over error classes (None: all)."""

    @model_validator(mode="after")
    def _two_votes(self) -> JudgeSection:
        if len(self.judges) * self.samples < 2:
            raise ValueError("the judge needs at least two votes per case: add a judge or samples")
        return self


class SelfplaySection(_Section):
    """From iteration 1 on, the last checkpoint (its exported GGUF) plays these roles."""

    roles: list[Literal["user", "assistant", "server"]] = Field(
        default_factory=lambda: ["assistant"]
    )
    forced_share: list[float] | float = Field(default_factory=lambda: [0.8, 0.5, 0.2])
    """Most of the new training data's assistant turns that may be forced from the label, per
    self-play iteration (iteration 1 takes the first value): a list (the last entry repeats)
    or a start value that ``forced_decay`` multiplies each further iteration. Iteration 0 is
    the cold start (the starting model cannot call tools yet) and has no cap. Trajectories
    with nothing forced always count."""
    forced_decay: float = Field(0.5, gt=0, le=1)
    serve_with: str | None = None
    """A llama.cpp backend of the config's ``backends`` whose settings (engines, sequences per
    engine, weights, threads) serve the checkpoint's GGUF for self-play, with its model replaced
    by the checkpoint; ``None``: served as the probe serves it (the defaults: f16 weights, 8
    sequences per engine). A scale run names its role backend here, so that the self-played
    assistant decodes as fast as the roles beside it (``weights: auto``: q8_0 on AMX)."""
    replay: float = Field(0.0, ge=0)
    """Trajectories of the last iteration's training pool drawn at random into this one, per
    new trajectory (0: none). Each iteration trains from the last checkpoint for
    ``loop.train``'s steps; a self-play iteration's new data is a few hundred trajectories, so
    without replay those steps go over them many times and the model drifts from what the
    earlier pool taught it. The replayed draw is counted in ``pool.json`` (``replayed``)."""

    @model_validator(mode="after")
    def _falls(self) -> SelfplaySection:
        shares = self.forced_share if isinstance(self.forced_share, list) else [self.forced_share]
        if not shares or any(not 0 <= s <= 1 for s in shares):
            raise ValueError("forced_share values must lie in [0, 1]")
        if any(b > a for a, b in itertools.pairwise(shares)):
            raise ValueError("forced_share must not rise from one iteration to the next")
        return self

    def forced_cap(self, iteration: int) -> float:
        """The forced share allowed in ``iteration``'s new data (1.0: the cold start)."""
        if iteration == 0:
            return 1.0
        if isinstance(self.forced_share, list):
            return self.forced_share[min(iteration - 1, len(self.forced_share) - 1)]
        return self.forced_share * self.forced_decay ** (iteration - 1)


class ExpandSection(_Section):
    per_error: int = Field(2, ge=0)
    """New scenarios per verified model error."""
    max_total: int = 40


class WeightsSection(_Section):
    floor: float = Field(0.25, gt=0)
    """Weight of a category or tool the model already gets right (relative to 1 + floor)."""


class EvalSection(_Section):
    bfcl_categories: list[str] = Field(
        default_factory=lambda: [
            "simple_python",
            "multiple",
            "parallel",
            "parallel_multiple",
            "irrelevance",
        ]
    )
    bfcl_limit: int | None = 20
    """Entries per BFCL category (deterministic sample); None for all."""
    modes: list[Literal["prompting", "fc"]] = Field(default_factory=lambda: ["prompting", "fc"])
    """``prompting``: BFCL's system prompt and Python-call output; ``fc``: the model's native
    tool format (the one a tooldojo checkpoint was trained with)."""
    max_tokens: int = 256
    concurrency: int = 16
    """BFCL entries in flight (batched on the embedded backend)."""
    baseline: bool = True
    """Also evaluate the starting model once, as iteration "base"."""


class FinalEvalSection(_Section):
    """The headline: after the last iteration, BFCL in full for the starting model and the final
    checkpoint (the categories and modes of ``loop.eval``), then the run's ``headline.json``
    (:mod:`tooldojo.eval.headline`).

    A section of its own, not ``loop.eval`` fields, so switching it on never redoes the
    per-iteration evaluations (their inputs hash ``loop.eval``)."""

    enabled: bool = False
    """Run it: ``headline/base/`` and ``headline/final/`` get ``bfcl.json`` and one
    ``bfcl_<mode>.jsonl`` per mode (resumable per entry: a kill loses nothing); the answers
    the per-iteration samples already hold for the same model and settings are reused."""
    limit: int | None = Field(None, ge=1)
    """Entries per category; None (the headline) for every entry BFCL ships."""


class BfclCacheSection(_Section):
    """The BFCL answer cache (:mod:`tooldojo.eval.answer_cache`) for every evaluation of the
    loop. Its own section, hashed by no stage: the cache never changes an answer, so switching
    it never redoes an evaluation."""

    enabled: bool = True
    """Reuse answers a model gave before (in any run) under the same settings, and store
    fresh ones; ``false`` asks the model every entry."""


class LoopConfig(_Section):
    model: str = "embedded"
    """The model being trained: 'embedded', a .gguf file or a Hugging Face directory."""
    seed: int = 0
    synth: SynthSection = Field(default_factory=SynthSection)
    verify: VerifySection = Field(default_factory=VerifySection)
    train: TrainSection = Field(default_factory=TrainSection)
    probe: ProbeSection = Field(default_factory=ProbeSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    selfplay: SelfplaySection = Field(default_factory=SelfplaySection)
    expand: ExpandSection = Field(default_factory=ExpandSection)
    weights: WeightsSection = Field(default_factory=WeightsSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    final_eval: FinalEvalSection = Field(default_factory=FinalEvalSection)
    bfcl_cache: BfclCacheSection = Field(default_factory=BfclCacheSection)


def load_loop_config(path: str | Path | None) -> LoopConfig:
    """The ``loop:`` section of ``path`` (defaults when the file or the section is absent)."""
    if path is None or not Path(path).exists():
        if path is not None and str(path) != "tooldojo.yaml":
            raise ToolDojoError(f"{path}: config file not found")
        return LoopConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ToolDojoError(f"{path}{where}: invalid YAML") from None
    try:
        return LoopConfig.model_validate(data.get("loop") or {})
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(p) for p in first["loc"])
        raise ToolDojoError(f"{path} at loop.{place}: {first['msg']}") from None
