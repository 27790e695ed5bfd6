"""The BFCL shim runs the official ast_checker without importing vendor SDKs."""

from __future__ import annotations

import subprocess
import sys

from tooldojo._bfcl import ast_check

FUNCTION = {
    "name": "math.hypot",
    "description": "Euclidean norm.",
    "parameters": {
        "type": "dict",
        "properties": {
            "x": {"type": "float", "description": "x"},
            "y": {"type": "float", "description": "y"},
            "unit": {"type": "string", "description": "unit"},
        },
        "required": ["x", "y"],
    },
}
ANSWER = [{"math.hypot": {"x": [3.0], "y": [4.0], "unit": ["", "cm"]}}]


def test_official_checker_accepts_sanitized_names_and_int_for_float() -> None:
    result = ast_check([FUNCTION], [{"math_hypot": {"x": 3, "y": 4}}], ANSWER)
    assert result["valid"], result


def test_official_checker_rejects_wrong_value_and_keeps_dots_when_asked() -> None:
    wrong = ast_check([FUNCTION], [{"math_hypot": {"x": 3, "y": 5}}], ANSWER)
    assert not wrong["valid"]
    assert wrong["error_type"] == "value_error:others"
    sanitized = [{"math_hypot": {"x": 3, "y": 4}}]
    dotted = ast_check([FUNCTION], sanitized, ANSWER, underscore_to_dot=False)
    assert dotted["error_type"] == "simple_function_checker:wrong_func_name"
    exact = ast_check(
        [FUNCTION], [{"math.hypot": {"x": 3, "y": 4}}], ANSWER, underscore_to_dot=False
    )
    assert exact["valid"]


def test_parallel_category_uses_the_order_free_checker() -> None:
    answer = [{"math.hypot": {"x": [1.0], "y": [1.0]}}, {"math.hypot": {"x": [2.0], "y": [2.0]}}]
    output = [{"math_hypot": {"x": 2.0, "y": 2.0}}, {"math_hypot": {"x": 1.0, "y": 1.0}}]
    assert ast_check([FUNCTION], output, answer, test_category="parallel")["valid"]
    assert not ast_check([FUNCTION], output[:1], answer, test_category="parallel")["valid"]


def test_importing_the_shim_loads_no_vendor_sdk_or_real_model_config() -> None:
    code = (
        "import sys\n"
        "from tooldojo._bfcl import ast_check\n"
        "ast_check([{'name': 'f', 'parameters': {'type': 'dict', 'properties': {},"
        " 'required': []}}], [{'f': {}}], [{'f': {}}])\n"
        "heavy = [m for m in ('openai', 'anthropic', 'google.genai', 'cohere', 'mistralai',"
        " 'bfcl_eval.constants.model_config', 'bfcl_eval.model_handler') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
