"""The run report's figures: rates with n and Wilson intervals, the funnel, failure reasons,
probe error classes, escaping, comparisons, and runs with data missing.

The run is ``tests/fixtures/report_run`` (two iterations of a scripted-model loop; how it was
made, and what was added to it, is in ``tests/fixtures/build_report_run.py``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tooldojo.cli import app
from tooldojo.report import Rate, collect_run, wilson_interval, write_report
from tooldojo.report.examples import gate_failures, reason_class

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"
PAYLOAD = "<img src=x onerror=\"console.error('not escaped')\">"

PERCENT = re.compile(r"\d+\.\d%")
WITH_N = re.compile(r"\d+\.\d% \(\d+/\d+, 95% CI \d+\.\d–\d+\.\d\)")


def bare_percentages(text: str) -> list[str]:
    """Percentages in ``text`` not followed by their ``(k/n, 95% CI ...)``."""
    return [m.group() for m in PERCENT.finditer(text) if not WITH_N.match(text, m.start())]


def page_text(html: str) -> str:
    """The page's text as a reader sees it (tags removed)."""
    return re.sub(r"<[^>]+>", "", html)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    copy = tmp_path / "report_run"
    shutil.copytree(FIXTURE, copy)
    return copy


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture run with its report written once (plots take seconds)."""
    copy = tmp_path_factory.mktemp("written") / "report_run"
    shutil.copytree(FIXTURE, copy)
    write_report(copy)
    return copy


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(2, 3)
    assert (round(low, 4), round(high, 4)) == (0.2077, 0.9385)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert str(Rate(2, 3)) == "66.7% (2/3, 95% CI 20.8–93.9)"
    for k, n in ((4, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError):
            Rate(k, n)


def test_bare_percentage_check_can_fail():
    assert bare_percentages("BFCL simple 66.7% here") == ["66.7%"]
    assert bare_percentages(f"BFCL simple {Rate(2, 3)}") == []


def test_funnel_counts_what_each_gate_dropped():
    stage = collect_run(FIXTURE).stages[-1]
    assert stage.name == "iter-001"
    steps = [(s.gate, s.entered, s.kept, s.dropped) for s in stage.funnel]
    # 11 passed trajectories and 5 broken copies: one written as text (format), two with an
    # unknown tool and one with a wrongly typed argument (schema), one wrong value (label).
    assert steps == [("format", 16, 15, 1), ("schema", 15, 12, 3), ("label", 12, 11, 1)]
    assert (stage.verified, stage.passed) == (16, 11)


def test_failure_reasons_are_grouped_by_shape_with_an_example():
    assert reason_class("turn 3: unknown tool 'x'; turn 4: other") == "unknown tool '…'"
    assert reason_class("turn 0 call 1 (f): replay failed: 12 s") == "replay failed: N s"
    failures = collect_run(FIXTURE).stages[-1].failures
    schema = {group.reason: group for group in failures["schema"]}
    assert schema["unknown tool '…'"].count == 2
    assert schema["unknown tool '…'"].example_id == "s1-00000-markup"
    assert [g.count for g in failures["format"]] == [1]
    assert [g.count for g in failures["label"]] == [1]


def test_failure_reasons_group_by_the_gates_codes_not_by_tool_names(tmp_path):
    """Gates that give codes are grouped by them: read by shape, each tool's name in an error
    line made a group of its own (362 shapes for 368 execution failures in one run)."""

    def row(tid: str, gate: str, errors: list[str], reasons: list[str] | None) -> str:
        details = {"errors": errors} | ({"reasons": reasons} if reasons else {})
        verdict = {"gate": gate, "passed": False, "reason": "; ".join(errors), "details": details}
        return json.dumps({"id": tid, "passed": False, "verdicts": [verdict]})

    lines = [
        row("a", "schema", ["turn 0: create_order: 'item' is a required property"], ["required"]),
        row("b", "schema", ["turn 0: ship_order: 'to' is a required property"], ["required"]),
        row("c", "schema", ["turn 0: ship_order/qty: 'x' is not of type 'number'"], ["type"]),
        row("d", "label", ["turn 1: value_error:list/tuple: p: x"], None),
        row("e", "schema", ["turn 0: unknown tool 'f'"], None),  # written before the codes
    ]
    path = tmp_path / "verified.jsonl"
    path.write_text("\n".join(lines) + "\n")
    failures = gate_failures(path)
    schema = {
        group.reason: (group.count, group.example_id, group.example) for group in failures["schema"]
    }
    assert schema == {
        "required": (2, "a", "turn 0: create_order: 'item' is a required property"),
        "type": (1, "c", "turn 0: ship_order/qty: 'x' is not of type 'number'"),
        "unknown tool '…'": (1, "e", "turn 0: unknown tool 'f'"),
    }
    assert [group.reason for group in failures["label"]] == ["value_error:list/tuple"]


def test_probe_error_classes_come_with_request_label_and_answer():
    stages = {s.name: s for s in collect_run(FIXTURE).stages}
    (group,) = stages["iter-001"].probe_errors
    assert (group.error_class, group.kind) == ("no_call_when_should", "call")
    assert (group.rate.k, group.rate.n) == (4, 4)
    assert group.example.request.startswith("Please")
    assert "(" in group.example.label  # the expected call, name(arg=[values])
    assert group.example.answer.startswith("text: ")
    # Older rows (no error_class) are grouped by the shape of their reason.
    older = {g.error_class: g.rate for g in stages["iter-000"].probe_errors}
    assert older == {"wrong_count: expected N call(s), got N": Rate(3, 3)}


def test_report_files_every_rate_with_its_n(written: Path):
    run = written
    html_path = run / "report.html"
    markdown = (run / "summary.md").read_text()
    assert "| after gate schema | 10 (−0) | 12 (−3) |" in markdown
    assert PERCENT.search(markdown) and bare_percentages(markdown) == []
    html = html_path.read_text()
    text = page_text(html)
    assert PERCENT.search(text) and bare_percentages(text) == []
    for name in ("bfcl.png", "heldout.png", "funnel.png", "reward.png", "capability.png"):
        assert (run / "plots" / name).stat().st_size > 1000
    assert html.count('src="data:image/png;base64,') == len(list((run / "plots").iterdir()))
    data = json.loads((run / "report.json").read_text())
    assert data["runs"][0]["stages"][-1]["funnel"][1]["kept"] == 12


def test_trajectory_text_is_escaped(written: Path):
    html = (written / "report.html").read_text()
    assert PAYLOAD not in html
    assert "&lt;img src=x onerror=" in html


def test_missing_data_leaves_sections_out(tmp_path: Path, written: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"name": "empty"}))
    assert "tooldojo run empty" in write_report(empty).read_text()
    # iter-000 predates turn provenance: its accounting column is left out, not zeroed.
    markdown = (written / "summary.md").read_text()
    provenance = markdown.split("## Turn provenance")[1].split("##")[0]
    assert "| | iter-001 |" in provenance
    assert "| assistant / forced | 100.0% (32/32" in provenance


def test_refinement_report_is_shown_when_present(run: Path):
    refine = {"tools_in": 120, "kept": 80, "dropped": {"credential": 30, "<b>odd</b>": 10}}
    (run / "refine_report.json").write_text(json.dumps(refine))
    html = write_report(run).read_text()
    section = html.split('id="refine"')[1].split("</section>")[0]
    assert "<th>tools_in</th><td>120</td>" in section
    assert "dropped / &lt;b&gt;odd&lt;/b&gt;" in section


def test_cli_compares_runs_side_by_side(tmp_path: Path, run: Path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    shutil.rmtree(other / "iter-001")
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["report", str(run), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "summary.md").read_text()
    assert "| | report_run | other |" in markdown  # a column per run (its last stage)
    assert "| trajectories verified | 16 | 10 |" in markdown
    assert bare_percentages(page_text((out / "report.html").read_text())) == []
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code != 0 and "not a run directory" in str(bad.exception)
    (other / "iter-000" / "eval" / "bfcl.json").write_text('{"fc": ')
    broken = CliRunner().invoke(app, ["report", str(other)])
    assert "iter-000/eval/bfcl.json: invalid JSON" in str(broken.exception)
    assert not (other / "report.html").exists()  # nothing half-written


def write_final_evaluation(run: Path, totals: dict[str, int], *, final_status: str = "done"):
    """``headline/<model>/bfcl.json`` as the loop's final evaluation writes it (the summary of
    tooldojo.eval.bfcl_runner plus the wall clock), and the stages in the manifest."""
    sizes = {"simple_python": 400, "irrelevance": 240}
    correct = {"base": {"simple_python": 0, "irrelevance": totals["irrelevance"]},
               "final": {"simple_python": min(7, totals["simple_python"] - 1),
                         "irrelevance": totals["irrelevance"] - 2}}  # fmt: skip
    for model in ("base", "final"):
        summary = {}
        for mode in ("fc", "prompting"):
            summary[mode] = {
                "mode": mode,
                "model_spec": "runs/x/iter-001/train/checkpoint" if model == "final" else "x",
                "categories": {
                    c: {
                        "correct": correct[model][c],
                        "total": totals[c],
                        "accuracy": correct[model][c] / totals[c],
                        "dataset_size": sizes[c],
                        "sampled": totals[c] < sizes[c],
                    }
                    for c in totals
                },
                "reused": 4 if model == "base" else 0,
                "wall_s": 1234.5,
                "entries_evaluated": sum(totals.values()) - (4 if model == "base" else 0),
                "reused_entries": 4 if model == "base" else 0,
                "reused_wall_s": 0.2,
            }
        folder = run / "headline" / model
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bfcl.json").write_text(json.dumps(summary))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["headline/base"] = {"status": "done"}
    manifest["stages"]["headline/final"] = {"status": final_status}
    (run / "manifest.json").write_text(json.dumps(manifest))


def headline_section(markdown: str, mode: str) -> str:
    return markdown.split(f", {mode} mode, before and after the loop")[1].split("\n## ")[0]


def test_the_headline_table_in_full(run: Path):
    write_final_evaluation(run, {"simple_python": 400, "irrelevance": 240})
    (run / "headline.json").write_text("{}")
    html = write_report(run).read_text()
    markdown = (run / "summary.md").read_text()
    assert "## Headline: BFCL in full, fc mode, before and after the loop" in markdown
    section = headline_section(markdown, "fc")
    assert "Full: every entry BFCL ships in each category." in section
    assert "SAMPLED" not in markdown
    assert "| | base | final |" in section
    assert f"| simple_python | {Rate(0, 400)} | {Rate(7, 400)} |" in section
    assert f"| irrelevance | {Rate(240, 240)} | {Rate(238, 240)} |" in section
    assert f"| all categories (pooled) | {Rate(240, 640)} | {Rate(245, 640)} |" in section
    assert "| answers asked in this run (wall time) | 636 (20.6 min) | 640 (20.6 min) |" in section
    assert "| answers reused (time to re-score them) | 4 (0.2 s) | 0 (0.2 s) |" in section
    assert "prompting mode, before and after the loop" in markdown
    assert markdown.index("## Headline") < markdown.index("## BFCL accuracy")  # first
    text = page_text(html)
    assert "Headline: BFCL in full, fc mode" in text and bare_percentages(text) == []
    assert 'data-k="7" data-n="400"' in html


def test_a_sampled_or_unfinished_headline_says_so(run: Path):
    write_final_evaluation(run, {"simple_python": 3, "irrelevance": 3}, final_status="running")
    html = write_report(run).read_text()
    markdown = (run / "summary.md").read_text()
    assert "## Headline: BFCL SAMPLED, fc mode" in markdown
    assert "SAMPLED, not the full benchmark: simple_python 3 of 400, irrelevance 3 of 240" in (
        headline_section(markdown, "fc")
    )
    assert "final is running (incomplete)" in markdown
    assert "no headline.json yet" in markdown
    assert "Headline: BFCL SAMPLED" in page_text(html)
    assert f"| simple_python | {Rate(0, 3)} | {Rate(2, 3)} |" in markdown


def test_no_headline_folder_no_headline_table(written: Path):
    assert "Headline" not in (written / "summary.md").read_text()


def test_a_comparison_shows_each_runs_headline(tmp_path: Path, run: Path):
    from tooldojo.report import write_comparison

    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    write_final_evaluation(run, {"simple_python": 400, "irrelevance": 240})
    write_final_evaluation(other, {"simple_python": 3, "irrelevance": 3})
    write_comparison([run, other], tmp_path / "cmp")
    markdown = (tmp_path / "cmp" / "summary.md").read_text()
    section = headline_section(markdown, "fc")
    assert "| | report_run: base | report_run: final | other: base | other: final |" in section
    assert "SAMPLED, not the full benchmark: simple_python 3 of 400" in section  # one run is
    assert f"| simple_python | {Rate(0, 400)} | {Rate(7, 400)} | {Rate(0, 3)} | {Rate(2, 3)} |" in (
        section
    )
