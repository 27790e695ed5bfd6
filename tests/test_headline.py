"""The loop's final evaluation and ``headline.json``: real bfcl-eval data and checkers, a real
(tiny) trained checkpoint, and BFCL's oracle standing in for the starting model, so the two
columns differ and every count can be checked. Kills and incomplete files are simulated on
disk exactly as a killed run leaves them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_loop import tiny_model  # noqa: F401 (a fixture)
from tooldojo import ToolDojoError
from tooldojo.cli import app
from tooldojo.eval.headline import build_headline, headline_markdown, write_headline
from tooldojo.jsonl import append_jsonl, iter_jsonl_dicts
from tooldojo.loop._context import LoopContext, LoopRequest
from tooldojo.loop._resume import run_stage
from tooldojo.loop._stage_eval import eval_stage, final_eval
from tooldojo.loop.config import EvalSection, FinalEvalSection, LoopConfig
from tooldojo.loop.rundir import RunDir, stage_inputs
from tooldojo.model import RunManifest
from train_support import build_tiny_model, corpus_for, write_verified

CATEGORIES = ["simple_python", "irrelevance"]
LIMIT = 3  # entries per category in the final evaluation (the headline takes all)


def config() -> LoopConfig:
    return LoopConfig(
        model="oracle",
        eval=EvalSection(
            bfcl_categories=CATEGORIES,
            bfcl_limit=2,
            modes=["fc", "prompting"],
            max_tokens=8,
            concurrency=4,
        ),
        final_eval=FinalEvalSection(enabled=True, limit=LIMIT),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real tooldojo checkpoint: the tiny random Llama after one SFT step."""
    from tooldojo.train import SFTSettings, run_sft

    base = tmp_path_factory.mktemp("headline")
    rows = write_verified(base / "verified.jsonl", ["Paris", "Oslo"])
    build_tiny_model(base / "model", corpus_for(rows))
    settings = SFTSettings(max_steps=1, batch_size=2, export_gguf=None)
    return run_sft(base / "verified.jsonl", str(base / "model"), base / "train", settings).out_dir


def make_run(tmp_path: Path, checkpoint: Path) -> LoopContext:
    """A run directory as the loop leaves it after one iteration: pool (with its BFCL check)
    and train done, the starting model's sampled evaluation done."""
    import shutil

    cfg = config()
    run = tmp_path / "run"
    rundir = RunDir(run, config={"specs": [], "loop": cfg.model_dump()})
    context = LoopContext(LoopRequest(specs=[], run=run, iterations=1, config=cfg), rundir)
    it = rundir.iteration_dir(0)
    write_verified(it / "train_data.jsonl", ["Lyon"])
    rundir.run_stage("iter-000/pool", lambda: {"train": 1, "bfcl_hits": 0}, outputs=[])
    rundir.run_stage(
        "iter-000/train",
        lambda: shutil.copytree(checkpoint, it / "train") and None,
        outputs=[it / "train" / "result.json"],
    )
    base = run / "base" / "eval"
    run_stage(  # as the controller registers it, so the final evaluation may reuse it
        context,
        "base/eval",
        lambda: eval_stage(context, cfg.model, base),
        inputs=stage_inputs(
            [], root=run, models={"start": cfg.model}, eval=cfg.eval.model_dump(), seed=cfg.seed
        ),
        outputs=[base / "bfcl.json"],
    )
    return context


@pytest.fixture(scope="module")
def template(tmp_path_factory, checkpoint) -> Path:
    """A run whose final evaluation finished (copied by each test that changes it)."""
    context = make_run(tmp_path_factory.mktemp("finished"), checkpoint)
    final_eval(context)
    return context.rundir.root


@pytest.fixture
def finished(tmp_path, template) -> LoopContext:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(template, run)
    cfg = config()
    rundir = RunDir(run, config={"specs": [], "loop": cfg.model_dump()})
    return LoopContext(LoopRequest(specs=[], run=run, iterations=1, config=cfg), rundir)


def test_final_evaluation_and_headline(finished):
    run = finished.rundir.root
    headline = json.loads((run / "headline.json").read_text())
    assert headline["selection"] == {
        "categories": CATEGORIES,
        "limit": LIMIT,
        "seed": 0,
        "max_tokens": 8,
        "entries": 2 * LIMIT,
    }
    assert headline["models"]["final"]["iteration"] == "iter-000"
    assert set(headline["results"]) == {"fc", "prompting"}
    for mode, models in headline["results"].items():
        # the oracle answers every entry right: a check that the counts come from the checker
        base = models["base"]
        assert base["all"] == {"correct": 2 * LIMIT, "total": 2 * LIMIT, "accuracy": 1.0}
        assert base["reused"] == 2 + 2  # the sampled base/eval answers are not asked again
        assert base["entries_evaluated"] == 2 * LIMIT - 4
        assert base["wall_s"] > 0
        final = models["final"]
        assert final["tool_format"] == ("codec:hermes" if mode == "fc" else "bfcl-python")
        assert final["reused"] == 0 and final["entries_evaluated"] == 2 * LIMIT
        # the tiny random model never writes a valid call
        assert final["categories"]["simple_python"] == {"correct": 0, "total": 3, "accuracy": 0}
        rows = [row for _, row in iter_jsonl_dicts(run / final["entries"])]
        assert len(rows) == 2 * LIMIT and {r["mode"] for r in rows} == {mode}
        recount = sum(r["valid"] for r in rows if r["category"] == "irrelevance")
        assert final["categories"]["irrelevance"]["correct"] == recount
    assert headline["bfcl_overlap"] == {
        "pool_stage_hits": {"iter-000": 0},
        "recheck_hits": {"iter-000": 0},
        "hits": 0,
        "clean": True,
    }
    assert headline["training"]["iter-000"]["steps"] == 1
    assert "no_call_share" in json.dumps(headline["training"]["iter-000"]["data"])
    table = headline_markdown(headline)
    assert "| fc | base | 3/3 (100.0%) | 3/3 (100.0%) | 6/6 |" in table

    # the run's report shows the same counts, with intervals, and says it is a sample
    from tooldojo.report import Rate, write_report

    write_report(run)
    summary = (run / "summary.md").read_text()
    section = summary.split("## Headline: BFCL SAMPLED, fc mode")[1].split("\n## ")[0]
    assert "simple_python 3 of 400, irrelevance 3 of 240" in section
    assert f"| simple_python | {Rate(3, 3)} | {Rate(0, 3)} |" in section
    assert "| answers asked in this run (wall time) | 2 (" in section
    assert "| answers reused (time to re-score them) | 4 (" in section


def test_a_killed_final_evaluation_resumes_and_is_refused_until_done(finished):
    run = finished.rundir.root
    path = run / "headline" / "final" / "bfcl_fc.jsonl"
    kept = path.read_text().splitlines()[:2]
    path.write_text("\n".join(kept) + "\n")  # what a kill after two entries leaves
    (run / "headline" / "final" / "bfcl.json").unlink()
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    manifest.stages["headline/final"].status = "running"
    (run / "manifest.json").write_text(manifest.model_dump_json())
    (run / "headline.json").unlink()
    finished.rundir = RunDir(run, config={"specs": [], "loop": config().model_dump()})
    with pytest.raises(ToolDojoError, match="final model is running"):
        build_headline(run)

    lines: list[str] = []
    finished.request.progress = lines.append
    final_eval(finished)
    assert "headline/base: done, skipped" in lines and "headline/final: running" in lines
    after = path.read_text().splitlines()
    assert after[:2] == kept  # finished entries are kept, not asked again
    ids = [json.loads(line)["id"] for line in after]
    assert len(ids) == len(set(ids)) == 2 * LIMIT
    timing = json.loads((run / "headline" / "final" / "timing_fc.json").read_text())
    assert timing["entries_evaluated"] == 2 * LIMIT + (2 * LIMIT - 2)  # both runs counted
    assert (run / "headline.json").is_file()


def test_headline_refuses_incomplete_or_contaminated_runs(finished, tmp_path):
    run = finished.rundir.root
    out = tmp_path / "export" / "headline.json"
    path = run / "headline" / "base" / "bfcl_prompting.jsonl"
    original = path.read_text()
    path.write_text("\n".join(original.splitlines()[1:]) + "\n")  # one entry lost
    with pytest.raises(ToolDojoError, match=r"bfcl_prompting.jsonl lacks 1 of 6 entries"):
        write_headline(run, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing half-written
    path.write_text(original + original.splitlines()[0] + "\n")  # one entry twice
    with pytest.raises(ToolDojoError, match="repeats 1 of 6"):
        build_headline(run)
    path.write_text(original)

    # a summary that disagrees with the per-entry file: a file changed after the evaluation
    summary_path = run / "headline" / "final" / "bfcl.json"
    summary = json.loads(summary_path.read_text())
    summary["fc"]["categories"]["simple_python"]["correct"] = 3
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ToolDojoError, match="a file changed since"):
        build_headline(run)
    summary["fc"]["categories"]["simple_python"]["correct"] = 0
    summary_path.write_text(json.dumps(summary))
    build_headline(run)

    # training data holding a BFCL question: the fresh check finds it although the pool
    # stage recorded 0
    from tooldojo.eval.bfcl_data import load_category
    from train_support import weather_trajectory

    question = load_category("simple_python", limit=1)[0].inference["question"][0][0]["content"]
    leaked = weather_trajectory(7, "Bern")
    leaked.messages[0].content = question
    data = run / "iter-000" / "train_data.jsonl"
    clean = data.read_text()
    append_jsonl(data, [leaked])
    with pytest.raises(ToolDojoError, match="overlaps BFCL"):
        build_headline(run)
    data.write_text(clean)

    # an iteration whose pool stage never recorded the check
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    manifest.stages["iter-000/pool"].counts.pop("bfcl_hits")
    (run / "manifest.json").write_text(manifest.model_dump_json())
    with pytest.raises(ToolDojoError, match="no BFCL overlap check of iter-000/pool"):
        build_headline(run)


def test_headline_cli_exports_beside_the_json(finished, tmp_path):
    run = finished.rundir.root
    out = tmp_path / "results" / "headline.json"
    result = CliRunner().invoke(app, ["eval", "headline", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| prompting | final |" in result.output
    headline = json.loads(out.read_text())
    for mode in ("fc", "prompting"):
        for name in ("base", "final"):
            copy = out.parent / f"headline.{mode}.{name}.jsonl"
            assert headline["results"][mode][name]["entries"] == copy.name
            assert (
                copy.read_bytes() == (run / "headline" / name / f"bfcl_{mode}.jsonl").read_bytes()
            )


def test_headline_cli_fails_without_a_final_evaluation(tmp_path, checkpoint):
    from tooldojo.cli import main

    context = make_run(tmp_path, checkpoint)
    out = tmp_path / "results" / "headline.json"
    import sys

    argv = sys.argv
    sys.argv = ["tooldojo", "eval", "headline", str(context.rundir.root), "--out", str(out)]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = argv
    assert exit_.value.code == 2
    assert not out.exists()


def test_final_eval_limit_is_validated():
    with pytest.raises(ValueError):
        FinalEvalSection(limit=0)


@pytest.mark.slow
def test_the_loop_ends_with_the_final_evaluation(tmp_path, tiny_model):  # noqa: F811
    """The controller runs the final evaluation after its last iteration (one here), and a
    second run of the same command skips it."""
    from test_loop import request as loop_request
    from tooldojo.loop.controller import run_loop

    run = tmp_path / "run"
    lines: list[str] = []
    loop = loop_request(run, tiny_model, progress=lines.append)
    loop.iterations = 1
    loop.config.final_eval = FinalEvalSection(enabled=True, limit=2)
    run_loop(loop)
    assert f"headline: {run / 'headline.json'}" in lines
    headline = json.loads((run / "headline.json").read_text())
    assert headline["models"]["final"]["iteration"] == "iter-000"
    assert headline["selection"]["entries"] == 4
    assert headline["bfcl_overlap"]["pool_stage_hits"] == {"iter-000": 0}
    for models in headline["results"].values():
        assert {name: m["all"]["total"] for name, m in models.items()} == {"base": 4, "final": 4}
    lines.clear()
    run_loop(loop)
    assert "headline/final: done, skipped" in lines


def test_answers_are_reused_only_from_the_same_model_and_settings(finished, tmp_path):
    from types import SimpleNamespace

    from tooldojo.loop._stage_eval import _reuse_answers, _same_evaluation

    run = finished.rundir.root
    assert _same_evaluation(finished, "base/eval", "oracle")
    assert not _same_evaluation(finished, "base/eval", "embedded")  # another model
    assert not _same_evaluation(finished, "iter-000/eval", "oracle")  # never ran
    finished.request.config.eval.max_tokens = 64  # other settings: other answers
    assert not _same_evaluation(finished, "base/eval", "oracle")

    source = run / "base" / "eval" / "bfcl_fc.jsonl"
    ids = {row["id"] for _, row in iter_jsonl_dicts(source)}
    same = SimpleNamespace(name="bfcl-oracle", mode="fc", tool_format="oracle")
    other = SimpleNamespace(name="someone-else", mode="fc", tool_format="oracle")
    assert _reuse_answers(source, tmp_path / "a.jsonl", other, ids) == 0
    assert _reuse_answers(source, tmp_path / "b.jsonl", same, ids) == len(ids) == 4
    assert _reuse_answers(source, tmp_path / "b.jsonl", same, ids) == 0  # already there
    rows = [row for _, row in iter_jsonl_dicts(tmp_path / "b.jsonl")]
    assert {row["reused_from"] for row in rows} == {"base/eval/bfcl_fc.jsonl"}


def test_full_config_is_the_headline():
    """configs/full.yaml evaluates all 1,240 entries of the five categories in both modes,
    and trains SFT then GRPO without a reference model."""
    from tooldojo.eval.headline import _selection
    from tooldojo.loop.config import load_loop_config

    cfg = load_loop_config(Path(__file__).parents[1] / "configs" / "full.yaml")
    assert cfg.final_eval.enabled and cfg.final_eval.limit is None
    assert sorted(cfg.eval.modes) == ["fc", "prompting"]
    assert (cfg.train.first, cfg.train.then, cfg.train.grpo["beta"]) == ("sft", "grpo", 0.0)
    selection = _selection(cfg.model_dump())
    assert {c: len(ids) for c, ids in selection.items()} == {
        "simple_python": 400,
        "multiple": 200,
        "parallel": 200,
        "parallel_multiple": 200,
        "irrelevance": 240,
    }


def test_a_second_run_reuses_the_answer_cache(tmp_path, checkpoint):
    """Run two evaluates the same checkpoint (a byte-identical copy, in another run directory):
    its sampled evaluation and its final evaluation come from the answer cache that run one
    filled, scored alike and marked; with ``loop.bfcl_cache.enabled: false`` the model is asked
    again. (The oracle base model has no identity, so it is never cached.)"""
    one = make_run(tmp_path / "one", checkpoint)
    final_eval(one)
    first = json.loads((one.rundir.root / "headline.json").read_text())
    assert first["reuse"]["final"]["computed"]["entries"] == 2 * 2 * LIMIT
    assert first["reuse"]["final"]["reused"]["entries"] == 0
    assert first["reuse"]["base"]["reused"]["sources"] == {"base/eval": 8}

    two = make_run(tmp_path / "two", checkpoint)
    lines: list[str] = []
    two.request.progress = lines.append
    ckpt = two.rundir.root / "iter-000" / "train" / "checkpoint"
    eval_stage(two, str(ckpt), two.rundir.root / "iter-000" / "eval")  # the per-iteration sample
    sampled = json.loads((two.rundir.root / "iter-000" / "eval" / "bfcl.json").read_text())
    assert {mode: s["reused"] for mode, s in sampled.items()} == {"fc": 4, "prompting": 4}
    final_eval(two)
    second = json.loads((two.rundir.root / "headline.json").read_text())
    for mode in ("fc", "prompting"):
        reused, fresh = second["results"][mode]["final"], first["results"][mode]["final"]
        assert reused["categories"] == fresh["categories"]
        assert (reused["computed"], reused["reused"]) == (0, 2 * LIMIT)
        assert reused["reused_sources"] == {"answer cache": 2 * LIMIT}
        assert reused["entries_evaluated"] == 0 and reused["reused_wall_s"] >= 0
        rows = [row for _, row in iter_jsonl_dicts(two.rundir.root / reused["entries"])]
        assert all(row["reused_from"].startswith("answer cache") for row in rows)
    assert second["reuse"]["final"]["computed"]["entries"] == 0
    assert second["reuse"]["final"]["computed"]["wall_s"] < 1  # no model time: bookkeeping
    assert second["reuse"]["final"]["reused"]["entries"] == 2 * 2 * LIMIT
    assert "BFCL fc headline final: 6 of 6 answers reused" in lines
    assert "(6 reused)" in headline_markdown(second)

    three = make_run(tmp_path / "three", checkpoint)
    three.request.config.bfcl_cache.enabled = False
    final_eval(three)
    third = json.loads((three.rundir.root / "headline.json").read_text())
    assert third["reuse"]["final"]["computed"]["entries"] == 2 * 2 * LIMIT
    assert third["reuse"]["final"]["reused"]["entries"] == 0
