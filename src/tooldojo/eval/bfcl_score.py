"""Scoring with BFCL's official checkers, and BFCL's summary groups and overall score.

Per entry this mirrors ``bfcl_eval.eval_checker.eval_runner`` step by step (decode, check the
decoded shape, run the checker, the same ``error_type`` strings); the checkers themselves are
BFCL's: ``ast_checker`` (through :mod:`tooldojo._bfcl`, which loads it without vendor SDKs) and
``multi_turn_checker``. ``eval_runner`` itself cannot be imported without every vendor SDK, so
its few lines of glue are restated here rather than imported.

The summary mirrors ``eval_runner_helper.generate_leaderboard_csv`` of bfcl-eval 2026.3.23.
"""

from __future__ import annotations

from typing import Any

from tooldojo._bfcl import ast_check, multi_turn_check
from tooldojo.eval.bfcl_data import LIVE, MULTI_TURN, NON_LIVE, BFCLEntry
from tooldojo.eval.bfcl_modes import Mode, decode_ast, decode_execute

NON_LIVE_AST = tuple(c for c in NON_LIVE if c != "irrelevance")
LIVE_AST = tuple(c for c in LIVE if "relevance" not in c)


def _bfcl_utils() -> Any:
    from bfcl_eval import utils

    return utils


def score_relevance(entry: BFCLEntry, raw: Any, mode: Mode) -> dict[str, Any]:
    """``_evaluate_single_relevance_entry``: irrelevance passes without a call, relevance with."""
    decoded: Any = None
    decode_error = None
    try:
        decoded = decode_ast(raw, mode, "Python")
        contains_call = not _bfcl_utils().is_empty_output(decoded)
    except Exception as error:  # BFCL counts any decoding failure as "no function call"
        contains_call = False
        decode_error = str(error)
    if "irrelevance" in entry.category:
        if not contains_call:
            return {"valid": True, "decoded": decoded}
        return {
            "valid": False,
            "decoded": decoded,
            "error_type": "irrelevance_error:decoder_success",
            "error": ["Valid syntax. Successfully decode AST when it should not."],
        }
    if contains_call:
        return {"valid": True, "decoded": decoded}
    return {
        "valid": False,
        "decoded": decoded,
        "error_type": "relevance_error:decoder_failed",
        "error": [f"Invalid syntax. Failed to decode AST when it should have. {decode_error}"],
    }


def score_ast(entry: BFCLEntry, raw: Any, mode: Mode) -> dict[str, Any]:
    """``_evaluate_single_ast_entry``: decode, check the shape, then BFCL's ``ast_checker``."""
    try:
        decoded = decode_ast(raw, mode, entry.language)
    except Exception as error:
        return {
            "valid": False,
            "decoded": None,
            "error_type": "ast_decoder:decoder_failed",
            "error": [f"Invalid syntax. Failed to decode AST. {error}"],
        }
    if not _bfcl_utils().is_function_calling_format_output(decoded):
        return {
            "valid": False,
            "decoded": str(decoded),
            "error_type": "ast_decoder:decoder_wrong_output_format",
            "error": ["Did not output in the specified format."],
        }
    result = ast_check(
        entry.scoring["function"],
        decoded,
        entry.ground_truth,
        entry.language,
        entry.category,
        # FC shows sanitized names (math_factorial); prompting shows BFCL's dotted ones.
        underscore_to_dot=mode == "fc",
    )
    if result["valid"]:
        return {"valid": True, "decoded": decoded}
    return {
        "valid": False,
        "decoded": decoded,
        "error_type": result["error_type"],
        "error": result["error"],
    }


def decode_multi_turn(raw_turns: list[list[Any]], mode: Mode) -> list[list[list[str]]]:
    """Per turn, the steps that decode to calls (BFCL skips chat and undecodable steps)."""
    is_empty = _execute_utils().is_empty_execute_response
    decoded_turns = []
    for steps in raw_turns:
        decoded_steps = []
        for raw in steps:
            try:
                calls = decode_execute(raw, mode)
            except Exception:  # BFCL: "ignore any failed decoding", the model is chatting
                continue
            if not is_empty(calls):
                decoded_steps.append(calls)
        decoded_turns.append(decoded_steps)
    return decoded_turns


def _execute_utils() -> Any:
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    return multi_turn_utils


def score_multi_turn(entry: BFCLEntry, raw_turns: list[list[Any]], mode: Mode) -> dict[str, Any]:
    """``_evaluate_single_multi_turn_entry``: all turns present, then ``multi_turn_checker``."""
    if len(raw_turns) != len(entry.ground_truth):
        return {
            "valid": False,
            "decoded": None,
            "error_type": "multi_turn:force_terminated",
            "error": [
                "Model was force-terminated during inference phase. The length of the model "
                f"result turns ({len(raw_turns)}) does not match the length of the ground "
                f"truth turns ({len(entry.ground_truth)})."
            ],
        }
    decoded = decode_multi_turn(raw_turns, mode)
    result = multi_turn_check(decoded, entry.ground_truth, entry.scoring)
    if result["valid"]:
        return {"valid": True, "decoded": decoded}
    return {
        "valid": False,
        "decoded": decoded,
        "error_type": result.get("error_type", "multi_turn:unknown"),
        "error": result.get("error_message", ""),
    }


def score_entry(entry: BFCLEntry, raw: Any, mode: Mode) -> dict[str, Any]:
    """The official verdict for one entry: ``valid``, ``decoded`` and, if failed, the error."""
    if entry.is_multi_turn:
        return score_multi_turn(entry, raw, mode)
    if entry.is_relevance:
        return score_relevance(entry, raw, mode)
    return score_ast(entry, raw, mode)


# --- BFCL's summary arithmetic (eval_runner_helper), restated because that module imports
# --- every vendor SDK; a category that was not run counts as 0 and is shown as N/A.

Score = dict[str, Any]
"""``{"accuracy": float, "total_count": int, "display_accuracy": float | "N/A"}``."""


def _na_or(result: Score, has_na: bool, display_na: bool) -> Score:
    result["display_accuracy"] = "N/A" if has_na and display_na else result["accuracy"]
    return result


def weighted(scores: list[Score], display_na: bool = True) -> Score:
    """``calculate_weighted_accuracy``: weighted by entry counts."""
    total = sum(score["total_count"] for score in scores)
    correct = sum(score["accuracy"] * score["total_count"] for score in scores)
    has_na = any(score["display_accuracy"] == "N/A" for score in scores)
    return _na_or({"accuracy": correct / total, "total_count": total}, has_na, display_na)


def unweighted(scores: list[Score], display_na: bool = True) -> Score:
    """``calculate_unweighted_accuracy``: the plain mean of the parts."""
    mean = sum(score["accuracy"] for score in scores) / len(scores)
    total = sum(score["total_count"] for score in scores)
    has_na = any(score["display_accuracy"] == "N/A" for score in scores)
    return _na_or({"accuracy": mean, "total_count": total}, has_na, display_na)


def percentage_weighted(scores: list[Score], weights: list[float], display_na: bool) -> Score:
    """``calculate_percentage_weighted_accuracy``: fixed weights, normalized to sum to 1."""
    norm = sum(weights)
    accuracy = sum(s["accuracy"] * w / norm for s, w in zip(scores, weights, strict=True))
    total = sum(score["total_count"] for score in scores)
    has_na = any(score["display_accuracy"] == "N/A" for score in scores)
    return _na_or({"accuracy": accuracy, "total_count": total}, has_na, display_na)


OVERALL_WEIGHTS = {"non_live": 10, "live": 10, "irrelevance": 10, "multi_turn": 30, "agentic": 40}
"""BFCL v4's overall weights (``generate_leaderboard_csv``)."""


def summarize(category_scores: dict[str, Score], dataset_sizes: dict[str, int]) -> dict[str, Any]:
    """BFCL's summary groups and overall score from per-category scores.

    ``category_scores`` maps a category to ``{"accuracy", "total_count"}``; a category absent
    from it was not run and counts as accuracy 0 over its full size with display "N/A", as in
    BFCL. The agentic group (web search, memory) is never run by this harness, so BFCL's
    ``overall`` is capped at 60 %; ``overall_without_agentic`` renormalizes the other weights
    and is tooldojo's figure, not BFCL's.
    """

    def get(category: str) -> Score:
        if category in category_scores:
            score = dict(category_scores[category])
            score["display_accuracy"] = score["accuracy"]
            return score
        return {"accuracy": 0.0, "total_count": dataset_sizes[category], "display_accuracy": "N/A"}

    simple = unweighted([get("simple_python"), get("simple_java"), get("simple_javascript")])
    non_live_parts = [simple, get("multiple"), get("parallel"), get("parallel_multiple")]
    non_live = unweighted(non_live_parts, display_na=False)
    live_parts = [get(c) for c in ("live_simple", "live_multiple", "live_parallel")]
    live = weighted([*live_parts, get("live_parallel_multiple")], display_na=False)
    multi_turn = unweighted(
        [get(c) for c in ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param")]
        + [get("multi_turn_long_context")],
        display_na=False,
    )
    irrelevance = unweighted([get("irrelevance"), get("live_irrelevance")])
    relevance = get("live_relevance")
    agentic: Score = {"accuracy": 0.0, "total_count": 0, "display_accuracy": "N/A"}
    parts = {
        "non_live": non_live,
        "live": live,
        "irrelevance": irrelevance,
        "multi_turn": multi_turn,
        "agentic": agentic,
    }
    overall = percentage_weighted(
        list(parts.values()), list(OVERALL_WEIGHTS.values()), display_na=False
    )
    without = {key: value for key, value in parts.items() if key != "agentic"}
    overall_without_agentic = percentage_weighted(
        list(without.values()), [OVERALL_WEIGHTS[key] for key in without], display_na=False
    )
    complete = all(get(c)["display_accuracy"] != "N/A" for c in dataset_sizes)
    members = {
        "non_live_ast": NON_LIVE_AST,
        "non_live_simple_ast": NON_LIVE_AST[:3],
        "live_ast": LIVE_AST,
        "multi_turn": MULTI_TURN,
        "irrelevance": ("irrelevance", "live_irrelevance"),
        "relevance": ("live_relevance",),
    }
    # BFCL's "summary" column shows N/A when a part is missing; its "overall" counts it as 0.
    non_live["summary_display"] = unweighted(non_live_parts)["display_accuracy"]
    groups = {
        "non_live_ast": non_live,
        "non_live_simple_ast": simple,
        "live_ast": live,
        "multi_turn": multi_turn,
        "irrelevance": irrelevance,
        "relevance": relevance,
    }
    for key, group in groups.items():
        group["not_run"] = [c for c in members[key] if c not in category_scores]
    return {
        **groups,
        "agentic": {**agentic, "not_run": ["web_search_*", "memory_*"]},
        "overall": overall,
        "overall_without_agentic": overall_without_agentic,
        "all_categories_run": complete,
    }
