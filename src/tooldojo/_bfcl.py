"""BFCL's official AST checker, imported without importing every model vendor's SDK.

``bfcl_eval.eval_checker.ast_eval.ast_checker`` imports ``MODEL_CONFIG_MAPPING`` from
``bfcl_eval.constants.model_config``, and that module imports a handler (and so the SDK) of
every model vendor BFCL supports. The checker uses the mapping for one thing only: whether a
model's function names had their dots replaced by underscores (``underscore_to_dot``).

We therefore load a private copy of the *unmodified* checker source from the installed
``bfcl-eval`` package, with a small stand-in mapping registered for exactly that one import
while the module executes. The stand-in is removed again afterwards, so a later genuine
``import bfcl_eval.constants.model_config`` still gets the real module, and our copy keeps
working whether or not the real one was imported before. Everything else the checker does is
BFCL's own code.

Used by the verification tests/benchmarks (agreement with our label gate) and by the
evaluation harness.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tooldojo.errors import ToolDojoError

_MODEL_CONFIG = "bfcl_eval.constants.model_config"
_CHECKER = "bfcl_eval.eval_checker.ast_eval.ast_checker"
_PRIVATE_NAME = "tooldojo._bfcl_ast_checker"

MODEL_UNDERSCORE_TO_DOT = "tooldojo_underscore_to_dot"
"""Model name under which the checker maps expected ``a.b`` names to ``a_b`` (sanitized names)."""
MODEL_KEEP_DOTS = "tooldojo_keep_dots"
"""Model name under which the checker compares function names exactly as BFCL writes them."""


@dataclass(frozen=True)
class _ModelConfigStandIn:
    """The one attribute of BFCL's ``ModelConfig`` the AST checker reads."""

    underscore_to_dot: bool


# convert_func_name looks up ``model_name.replace("_", "/")``.
_STAND_IN_MAPPING = {
    MODEL_UNDERSCORE_TO_DOT.replace("_", "/"): _ModelConfigStandIn(underscore_to_dot=True),
    MODEL_KEEP_DOTS.replace("_", "/"): _ModelConfigStandIn(underscore_to_dot=False),
}

_lock = threading.Lock()
_module: ModuleType | None = None


def _load_checker_module() -> ModuleType:
    """Execute BFCL's ast_checker source as a private module (once per process)."""
    global _module
    with _lock:
        if _module is not None:
            return _module
        spec = importlib.util.find_spec(_CHECKER)
        if spec is None or spec.origin is None:
            raise ToolDojoError(
                "bfcl-eval is not installed: run `pip install --no-deps bfcl-eval==2026.3.23`"
            )
        stand_in = ModuleType(_MODEL_CONFIG)
        stand_in.MODEL_CONFIG_MAPPING = _STAND_IN_MAPPING  # type: ignore[attr-defined]
        inserted = _MODEL_CONFIG not in sys.modules
        if inserted:
            sys.modules[_MODEL_CONFIG] = stand_in
        try:
            private = importlib.util.spec_from_file_location(_PRIVATE_NAME, spec.origin)
            assert private is not None and private.loader is not None
            module = importlib.util.module_from_spec(private)
            private.loader.exec_module(module)
        finally:
            if inserted and sys.modules.get(_MODEL_CONFIG) is stand_in:
                del sys.modules[_MODEL_CONFIG]
        # If the real model_config had been imported already, the copy bound the real mapping:
        # point it at ours so the model names above mean the same thing in either case.
        module.MODEL_CONFIG_MAPPING = _STAND_IN_MAPPING  # type: ignore[attr-defined]
        _module = module
        return module


def checker_module() -> ModuleType:
    """The private copy of BFCL's ``ast_checker`` module (for its helpers, e.g. benchmarks)."""
    return _load_checker_module()


def bfcl_language(name: str) -> Any:
    """BFCL's ``Language`` enum member for ``"Python"``, ``"Java"`` or ``"JavaScript"``."""
    from bfcl_eval.constants.enums import Language

    try:
        return Language[name.upper()]
    except KeyError:
        raise ToolDojoError(f"unknown BFCL language {name!r}") from None


def ast_check(
    func_description: list[dict[str, Any]],
    model_output: list[dict[str, dict[str, Any]]],
    possible_answer: list[dict[str, dict[str, list[Any]]]],
    language: str = "Python",
    test_category: str = "simple_python",
    *,
    underscore_to_dot: bool = True,
) -> dict[str, Any]:
    """Run BFCL's official ``ast_checker``; returns its ``{"valid", "error", "error_type"}``.

    ``model_output`` is BFCL's decoded form ``[{"func": {"arg": value}}, ...]``;
    ``underscore_to_dot=True`` means the model saw sanitized names (``math_factorial`` for
    BFCL's ``math.factorial``), as every tooldojo model does.
    """
    module = _load_checker_module()
    return module.ast_checker(
        func_description,
        model_output,
        possible_answer,
        bfcl_language(language),
        test_category,
        MODEL_UNDERSCORE_TO_DOT if underscore_to_dot else MODEL_KEEP_DOTS,
    )


_multi_turn_lock = threading.Lock()
_multi_turn_runs = 0


def multi_turn_check(
    decoded: list[list[list[str]]],
    ground_truth: list[list[str]],
    entry: dict[str, Any],
) -> dict[str, Any]:
    """Run BFCL's official ``multi_turn_checker``; returns its ``{"valid", ...}`` result.

    ``decoded`` holds, per turn and per step, the model's calls as BFCL's execution strings
    (``["cd(folder='temp')", ...]``); ``entry`` is BFCL's test entry (``id``,
    ``initial_config``, ``involved_classes``). The checker module imports no vendor SDK, so it
    is imported as is.

    BFCL's executor caches environment instances in its module globals under a name made of
    the model name and the entry id, so checking one entry twice in one process would reuse
    the mutated state of the first check. Each call therefore uses a model name of its own and
    drops the instances it created afterwards (the cache would otherwise grow for ever).
    """
    global _multi_turn_runs
    try:
        from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker, multi_turn_utils
    except ImportError as error:
        raise ToolDojoError(
            f"bfcl-eval's multi-turn checker cannot be imported ({error}); install bfcl-eval "
            "with --no-deps and the packages listed in pyproject.toml"
        ) from None
    with _multi_turn_lock:
        _multi_turn_runs += 1
        model_name = f"tooldojo_check_{_multi_turn_runs}_x"  # no run's name prefixes another's
    category = entry["id"].rsplit("_", 1)[0]
    try:
        return multi_turn_checker.multi_turn_checker(
            decoded, ground_truth, entry, category, model_name
        )
    finally:
        cache = vars(multi_turn_utils)
        with _multi_turn_lock:
            for key in [key for key in cache if key.startswith(f"{model_name}_")]:
                del cache[key]
