"""The BFCL answer cache: real bfcl-eval data and checkers; scripted models (the orchestration
under test) that count how often they are asked, and a tiny real checkpoint for the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from tooldojo.cli import app
from tooldojo.eval.answer_cache import AnswerCache, backend_identity, cache_dir
from tooldojo.eval.bfcl_runner import BFCLSettings, load_entries, open_cache, run_bfcl
from tooldojo.eval.models import EvalModel, resolve_model
from tooldojo.eval.oracle import bfcl_oracle
from tooldojo.jsonl import iter_jsonl_dicts
from tooldojo.llm.base import Completion
from tooldojo.llm.config import BackendConfig
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import ToolCall

CATEGORIES = ["simple_python", "irrelevance"]


def half_right(asked: list[str], *, mode: str = "fc", identity: str = "half-right") -> EvalModel:
    """BFCL's own answer to even-numbered entries, an empty call to the others (so the cache
    holds right and wrong answers); every entry it is asked is appended to ``asked``."""
    oracle = bfcl_oracle()

    def wrong(messages, tools):  # type: ignore[no-untyped-def]
        return Completion(tool_calls=[ToolCall(id="c", name=tools[0].name, arguments={})])

    def per_entry(entry):  # type: ignore[no-untyped-def]
        asked.append(entry.id)
        even = int(entry.id.rsplit("_", 1)[1]) % 2 == 0
        return oracle(entry) if even else ScriptedChatModel(wrong)

    tool_format = "openai-tools" if mode == "fc" else "bfcl-python"
    return EvalModel(
        ScriptedChatModel([]),
        mode,  # type: ignore[arg-type]
        tool_format,
        "half-right",
        identity={"kind": "scripted", "name": identity},
        per_entry=per_entry,
    )


def evaluate(evaluated: EvalModel, path: Path, settings: BFCLSettings, *, cache: bool = True):  # type: ignore[no-untyped-def]
    answers = open_cache(evaluated, settings) if cache else None
    return anyio.run(lambda: run_bfcl(evaluated, path, settings, cache=answers))


def settings(**changes) -> BFCLSettings:  # type: ignore[no-untyped-def]
    return BFCLSettings(**({"categories": CATEGORIES, "limit": 3, "max_tokens": 64} | changes))


def test_a_reused_answer_is_scored_identically_and_marked(tmp_path: Path) -> None:
    asked: list[str] = []
    first = evaluate(half_right(asked), tmp_path / "first.jsonl", settings())
    assert len(asked) == 6 and first.reused == 0
    verdicts = {r.valid for r in first.results}
    assert verdicts == {True, False}  # both kinds of answer go through the cache

    second = evaluate(half_right(asked), tmp_path / "second.jsonl", settings())
    assert len(asked) == 6  # nobody was asked again
    assert second.reused == 6 and second.summary["reused"] == 6
    before = {r.id: r for r in first.results}
    for result in second.results:
        fresh = before[result.id]
        assert result.reused_from is not None and "answer cache" in result.reused_from
        assert str((tmp_path / "first.jsonl").resolve()) in result.reused_from
        assert (result.valid, result.error_type, result.error, result.decoded, result.raw) == (
            fresh.valid,
            fresh.error_type,
            fresh.error,
            fresh.decoded,
            fresh.raw,
        )
    assert first.summary["categories"] == {
        c: v | {"reused": 0} for c, v in second.summary["categories"].items()
    }
    rows = [row for _, row in iter_jsonl_dicts(tmp_path / "second.jsonl")]
    assert all(row["reused_from"] for row in rows)  # a reader of the file can tell
    assert all(row["reused_from"] is None for _, row in iter_jsonl_dicts(tmp_path / "first.jsonl"))


def test_a_changed_setting_model_or_mode_misses(tmp_path: Path) -> None:
    asked: list[str] = []
    evaluate(half_right(asked), tmp_path / "a.jsonl", settings())
    assert len(asked) == 6
    evaluate(half_right(asked), tmp_path / "b.jsonl", settings(max_tokens=65))
    assert len(asked) == 12  # another token budget: other answers
    evaluate(half_right(asked), tmp_path / "c.jsonl", settings(max_steps=3))
    assert len(asked) == 18  # another multi-turn step limit
    evaluate(half_right(asked, identity="retrained"), tmp_path / "d.jsonl", settings())
    assert len(asked) == 24  # another model
    evaluate(half_right(asked, mode="prompting"), tmp_path / "e.jsonl", settings())
    assert len(asked) == 30  # another mode
    run = evaluate(half_right(asked), tmp_path / "f.jsonl", settings(), cache=False)
    assert len(asked) == 36 and run.reused == 0  # --no-cache
    run = evaluate(half_right(asked), tmp_path / "g.jsonl", settings(limit=4))
    assert len(asked) == 38 and run.reused == 6  # a larger selection: only the new entries
    stores = sorted(p.name for p in cache_dir().glob("*.jsonl"))
    assert len(stores) == 5 and len(list(cache_dir().glob("*.key.json"))) == 5
    key = json.loads(next(cache_dir().glob("*.key.json")).read_text())
    assert {"model", "mode", "tool_format", "sampling", "max_steps", "bfcl_eval"} <= set(key)
    assert key["bfcl_eval"] and key["prompt_sources"]


def test_a_reused_answer_is_scored_again_not_copied(tmp_path: Path) -> None:
    """The store holds raw answers; the checker decides again on reuse (here it must fail an
    answer that was right when stored, after the stored text was replaced by prose)."""
    asked: list[str] = []
    first = evaluate(half_right(asked), tmp_path / "a.jsonl", settings())
    right = next(r for r in first.results if r.valid and r.category == "simple_python")
    (store,) = cache_dir().glob("*.jsonl")
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    for row in lines:
        if row["id"] == right.id:
            row["raw"] = "I would rather not call anything."
    store.write_text("".join(json.dumps(row) + "\n" for row in lines))
    second = evaluate(half_right(asked), tmp_path / "b.jsonl", settings())
    again = next(r for r in second.results if r.id == right.id)
    assert again.reused_from and not again.valid
    assert again.error_type is not None


def test_an_entry_shown_differently_misses(tmp_path: Path) -> None:
    entry = load_entries(settings())[0]
    cache = AnswerCache({"test": 1}, tmp_path)
    cache.put(entry.id, entry.inference, {"raw": "x"})
    assert cache.get(entry.id, entry.inference)["raw"] == "x"
    changed = json.loads(json.dumps(entry.inference))
    changed["question"][0][0]["content"] += " (reworded)"
    assert cache.get(entry.id, changed) is None
    assert cache.get("another_id", entry.inference) is None


def test_the_store_survives_a_kill_and_never_holds_an_entry_twice(tmp_path: Path) -> None:
    one = AnswerCache({"test": 2}, tmp_path)  # two processes with the same key
    two = AnswerCache({"test": 2}, tmp_path)
    assert one.put("a", {"q": 1}, {"raw": "A"})
    assert not two.put("a", {"q": 1}, {"raw": "A again"})  # it reads what `one` appended
    assert two.put("b", {"q": 2}, {"raw": "B"})
    with one.path.open("a") as handle:
        handle.write('{"key": "' + one.digest + '", "id": "c", "ra')  # killed mid-line
    three = AnswerCache({"test": 2}, tmp_path)
    assert len(three) == 2 and three.get("c", {"q": 3}) is None
    assert three.put("c", {"q": 3}, {"raw": "C"})
    lines = one.path.read_text().splitlines(keepends=True)
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]
    assert all(line.endswith("\n") for line in lines)
    assert not one.put("c", {"q": 3}, {"raw": "C"})
    assert json.loads((tmp_path / f"{one.name}.key.json").read_text()) == {"test": 2}
    other = AnswerCache({"test": 3}, tmp_path)
    assert len(other) == 0 and other.path != one.path


def test_failed_inference_is_not_stored(tmp_path: Path) -> None:
    def broken(messages, tools):  # type: ignore[no-untyped-def]
        raise TimeoutError("the server did not answer")

    evaluated = EvalModel(
        ScriptedChatModel(broken), "fc", "openai-tools", "broken", identity={"kind": "t"}
    )
    run = evaluate(evaluated, tmp_path / "a.jsonl", settings(limit=1))
    assert all(r.inference_error for r in run.results)
    cache = open_cache(evaluated, settings(limit=1))
    assert cache is not None and len(cache) == 0


def test_what_identifies_a_model() -> None:
    assert resolve_model("oracle", "fc").identity is None  # the harness check: never cached
    embedded = backend_identity(BackendConfig(kind="llamacpp"))
    assert embedded is not None and len(embedded["sha256"]) == 64
    assert embedded["weights"] == "f16" and embedded["versions"]["llama-cpp-python"]
    assert embedded["llama_cpp_system"]  # the build's kernels (AMX or not): other rounding
    other = backend_identity(BackendConfig(kind="llamacpp", weights="file"))
    assert other != embedded
    assert backend_identity(BackendConfig(kind="llamacpp", kv_cache="q8_0")) != embedded
    assert backend_identity(BackendConfig(kind="llamacpp", flash_attn=False)) != embedded
    assert backend_identity(BackendConfig(kind="llamacpp", faults={"rate": 0.1})) is None
    endpoint = backend_identity(
        BackendConfig(kind="openai", model="m", base_urls=["http://h:1/v1"])
    )
    assert endpoint["model"] == "m" and "sha256" not in endpoint
    hub = BackendConfig(kind="transformers", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert backend_identity(hub) is None  # a name, not weights: never cached


def test_identity_is_the_content_not_the_path(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.bin").write_bytes(b"same weights")
    ids = [
        backend_identity(BackendConfig(kind="transformers", model=str(tmp_path / n)))
        for n in ("a", "b")
    ]
    assert ids[0] == ids[1]
    (tmp_path / "b" / "weights.bin").write_bytes(b"trained further")
    assert backend_identity(BackendConfig(kind="transformers", model=str(tmp_path / "b"))) != ids[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from train_support import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("cache") / "model", ["hello world"] * 20)


def test_eval_bfcl_fills_and_reads_the_cache(tmp_path: Path, tiny: Path) -> None:
    """`tooldojo eval bfcl` with a real (tiny) model: the first call fills the store, the
    second reads it, --no-cache and another --max-tokens ask the model again."""
    base = ["eval", "bfcl", "--model", f"transformers:{tiny}", "-c", "irrelevance"]
    base += ["--limit", "2", "--concurrency", "2"]

    def call(name: str, *extra: str) -> list[dict]:  # type: ignore[type-arg]
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        return [row for _, row in iter_jsonl_dicts(tmp_path / f"{name}.entries.jsonl")]

    first = call("first", "--max-tokens", "4")
    assert [row["reused_from"] for row in first] == [None, None]
    assert len(list(cache_dir().glob("*.jsonl"))) == 1
    second = call("second", "--max-tokens", "4")
    assert all(row["reused_from"] for row in second)
    assert sorted((r["id"], r["raw"], r["valid"]) for r in second) == sorted(
        (r["id"], r["raw"], r["valid"]) for r in first
    )
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["reused"] == 2 and summary["answer_cache"]
    assert all(row["reused_from"] is None for row in call("off", "--max-tokens", "4", "--no-cache"))
    assert all(row["reused_from"] is None for row in call("longer", "--max-tokens", "5"))
    assert len(list(cache_dir().glob("*.jsonl"))) == 2


def test_prefilling_with_eval_bfcl_serves_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tooldojo eval bfcl --model embedded --max-tokens 128` (the pre-fill command of
    configs/full.yaml) and the loop's evaluation of `loop.model: embedded` use one store.
    (Loading is replaced by a scripted model: what is compared is the key, not answers.)"""
    import tooldojo.llm.config as llm_config
    from tooldojo.loop._stage_eval import eval_spec

    monkeypatch.setattr(llm_config, "load_model", lambda spec: ScriptedChatModel([]))
    for mode in ("fc", "prompting"):
        cli = resolve_model("embedded", mode, n_ctx=8192)  # the CLI's defaults
        loop = resolve_model(eval_spec("embedded"), mode)
        wanted = BFCLSettings(max_tokens=128)
        assert open_cache(cli, wanted).path == open_cache(loop, wanted).path  # type: ignore[union-attr]
        assert open_cache(cli, BFCLSettings(max_tokens=512)).path != open_cache(loop, wanted).path  # type: ignore[union-attr]
