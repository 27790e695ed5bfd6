"""What in a tool result's value says the call failed, or says nothing.

Two readers need the same answer: the simulated server, which re-asks its model when the
result it wrote is a made-up failure or filler (the call was planned to succeed; failures are
injected on purpose and labelled), and the execution gate, which fails a trajectory holding
one. The gate lives a layer above (``verify`` imports ``mcp``), so the checks live here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from tooldojo.names import reports_error, status_flag


def scalar_leaves(value: Any) -> list[Any]:
    """The strings and numbers inside a JSON value (booleans and nulls left out)."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in scalar_leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in scalar_leaves(item)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, str | int | float):
        return [value]
    return []


def runaway_piece(text: str) -> str | None:
    """The run of ``text`` where a piece of three or more characters, one of them a letter,
    repeats three or more times (``john.john.john.``, ``/v2/v2/v2``), else ``None``. Digits
    alone are left to numbers (``1000000000``)."""
    for match in _REPEATED_PIECE.finditer(text):
        if any(c.isalpha() for c in match.group(1)):
            return match.group(0)
    return None


_REPEATED_PIECE = re.compile(r"(.{3,}?)\1{2,}")


SUCCESS_SAYS_FAILURE = re.compile(
    r"(?i)^\s*(error|failed|failure|invalid|exception)\b|\berror:|\bnot (found|allowed)\b"
)
"""A string in a successful result that reports a failure ("Error: ...", "not found")."""


def reads_as_failure(value: Any, simulated: bool = False) -> str | None:
    """What in a *successful* result's value (its JSON, or its text) reports a failure (a
    simulator that could not make the call succeed but returned it as success), or ``None``.
    ``simulated``: the server model wrote the result, so an error object in it is a failure it
    made up."""
    if simulated and isinstance(value, dict):
        # An error object in a model-written success (Google's long-running Operation:
        # {"done": true, "error": {...}}): the simulated server filled the schema's optional
        # "error", and the result passed as a success; 1 of 30 samples of the scale run held
        # one. A real tool's own {"error": ...} answer is its result, read by the turn gates.
        # The same for any top-level error-like field ("remoteException", "ErrorMessages",
        # "WebException") with content, or a flag saying so ({"IsFaulted": true}): 3 of 353
        # passed trajectories of the issue-15 scale run (s21-01569, -02559, -03068) held one.
        for key, field_value in value.items():
            if (said := _error_field(key, field_value)) is not None:
                return said
    return next(
        (
            leaf[:80]
            for leaf in scalar_leaves(value)
            if isinstance(leaf, str) and SUCCESS_SAYS_FAILURE.search(leaf)
        ),
        None,
    )


def _has_content(value: Any) -> bool:
    """Some non-empty scalar at any depth ({"Errors": [], "Code": ""} has none)."""
    if isinstance(value, dict):
        return any(_has_content(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_content(v) for v in value)
    return value not in (None, "", False)


def _error_field(key: str, value: Any) -> str | None:
    """``key: value`` (short) when this top-level field of a result reports a failure."""
    if isinstance(value, bool):
        flag = status_flag(key)
        failed = (value and flag == "failed") or (not value and flag == "success")
    else:
        failed = reports_error(key) and _has_content(value)
    return f"{key}: {json.dumps(value, ensure_ascii=False)}"[:80] if failed else None


def junk_value(value: Any) -> str | None:
    """A string in a simulated result's JSON value that says nothing, the server model's
    filler where a value belongs (which a forced call then copies):

    * two or more characters and no letter or digit (``");"``, ``");;;;;;;;;"``, ``", "``);
      42 of 438 passed trajectories of the scale run held one. A single character (``","``
      for a delimiter) may be a value.
    * a runaway: a piece of three or more characters, one a letter, three times running
      (``CJHU7oI2_CJHU7oI2_CJHU7oI2_C``, ``john.john.john.john``, ``/v2/v2/v2/v2``;
      :func:`runaway_piece`). The simulator used to fail such text only where it reached the
      string bound; below it, 21 of 651 trajectories of the scale3 run held one, 8 of them
      passed.
    """
    for leaf in scalar_leaves(value):
        if not isinstance(leaf, str):
            continue
        if len(leaf.strip()) >= 2 and not _ALNUM.search(leaf):
            return leaf[:40]
        if piece := runaway_piece(leaf):
            return piece[:40]
    return None


_ALNUM = re.compile(r"[^\W_]")
"""A letter or digit (in any script)."""


def invented(value: Any) -> tuple[Literal["failure", "junk"], str] | None:
    """What makes a model-written success not one: ``("failure", what reports it)`` or
    ``("junk", the filler)``, else ``None``. The simulated server re-asks such an answer, and
    ``bench/server_results.py`` counts them."""
    if (said := reads_as_failure(value, simulated=True)) is not None:
        return "failure", said
    if (junk := junk_value(value)) is not None:
        return "junk", junk
    return None
