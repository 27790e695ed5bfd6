"""Where tooldojo keeps what it can rebuild: the downloaded spec corpus (``corpus/``), the
built Python-function library (``pylib/``), converted GGUF weights (``gguf/``), saved prompt
KV states (``kv/``), BFCL answers (``bfcl/``) and the BFCL overlap guard (``bfcl_guard-*``).

One place decides the folder, so setting ``$TOOLDOJO_CACHE`` moves all of them together (a test
or a benchmark that points it at a scratch folder never touches the user's cache). Every user
asks at call time, not at import, so a changed environment is seen.

``$TOOLDOJO_CACHE_DIR``, which the BFCL guard alone used to read, is not read: it was the one
deviation from the name the docs and every other cache use.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TOOLDOJO_CACHE"


def cache_path(*parts: str) -> Path:
    """``$TOOLDOJO_CACHE``, else ``$XDG_CACHE_HOME/tooldojo``, else ``~/.cache/tooldojo``,
    joined with ``parts``. Nothing is created: each user makes the folder it writes to.

    ``$XDG_CACHE_HOME`` is honoured as the XDG base-directory spec asks (the BFCL guard did
    already; where it is unset, as on this machine, every path is what it was)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        root = Path(configured)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tooldojo"
    return root.joinpath(*parts)
