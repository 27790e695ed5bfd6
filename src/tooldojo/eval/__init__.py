"""Evaluation: BFCL with its official data and checkers, and held-out synthetic data.

See docs/eval.md. BFCL is test data only: nothing here may feed synthesis or training.
"""

from tooldojo.eval.answer_cache import AnswerCache
from tooldojo.eval.bfcl_data import CATEGORIES, BFCLEntry, expand_categories, load_category
from tooldojo.eval.bfcl_runner import (
    BFCLRun,
    BFCLSettings,
    EntryResult,
    load_entries,
    open_cache,
    run_bfcl,
)
from tooldojo.eval.bfcl_score import score_entry, summarize
from tooldojo.eval.models import EvalModel, resolve_model
from tooldojo.eval.synthetic import SyntheticSettings, TurnResult, run_synthetic

__all__ = [
    "CATEGORIES",
    "AnswerCache",
    "BFCLEntry",
    "BFCLRun",
    "BFCLSettings",
    "EntryResult",
    "EvalModel",
    "SyntheticSettings",
    "TurnResult",
    "expand_categories",
    "load_category",
    "load_entries",
    "open_cache",
    "resolve_model",
    "run_bfcl",
    "run_synthetic",
    "score_entry",
    "summarize",
]
