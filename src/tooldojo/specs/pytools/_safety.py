"""Which library callables may become tools at all: an allowlist of modules, a denylist of names.

Checked twice: when the library is built, and again by the executor before it resolves a
``metadata["python"]`` reference, because a registry file can be written by anyone and must
not be a way to reach ``os.system``.
"""

from __future__ import annotations

import re

ALLOWED_MODULES: tuple[str, ...] = (
    "math",
    "cmath",
    "statistics",
    "calendar",
    "datetime",
    "fractions",
    "colorsys",
    "string",
    "textwrap",
    "unicodedata",
    "bisect",
    "heapq",
    "itertools",
    "numpy",
    "numpy.linalg",
    "scipy.special",
    "scipy.stats",
    "scipy.constants",
    "scipy.spatial.distance",
)
"""Pure computation only: none of these touches files, the network, processes or the clock."""

# Whole snake_case tokens that mark I/O, code execution, global state, sleeping or waste.
_DENY_TOKENS = frozenset(
    [
        "eval",
        "exec",
        "compile",
        "import",
        "open",
        "input",
        "system",
        "popen",
        "spawn",
        "fork",
        "kill",
        "remove",
        "unlink",
        "rmdir",
        "mkdir",
        "makedirs",
        "chdir",
        "load",
        "loads",
        "save",
        "savez",
        "dump",
        "dumps",
        "pickle",
        "unpickle",
        "marshal",
        "sleep",
        "exit",
        "quit",
        "setattr",
        "delattr",
        "getattr",
        "globals",
        "locals",
        "vars",
        "file",
        "fromfile",
        "tofile",
        "loadtxt",
        "savetxt",
        "genfromtxt",
        "memmap",
        "socket",
        "url",
        "show",
        "info",
        "test",
        "breakpoint",
        "seterr",
        "seterrcall",
        "geterr",
        "geterrcall",
        "setbufsize",
        "getbufsize",
        "printoptions",
        "source",
        "lookfor",
        "who",
        "empty",
        "byte",
        "bounds",
        "nditer",
        "vectorize",
        "frompyfunc",
        "piecewise",
        "apply",
        "along",
        "over",
        "errstate",
        "random",
        "seed",
        "rand",
        "randn",
        "shuffle",
        "frombuffer",
        "fromfunction",
        "fromiter",
        "fromregex",
        "fromstring",
        "fromarrays",
        "fromrecords",
    ]
)
_DENY_PREFIXES = ("save", "load", "set_", "get_", "print", "show", "test", "_")
_UNSAFE_REF = re.compile(r"[^A-Za-z0-9_.:]")


def denied_name(name: str) -> str | None:
    """Why the callable called ``name`` may not be a tool, or None."""
    lower = name.lower()
    if lower.startswith(_DENY_PREFIXES):
        return f"name {name!r} starts with a denied prefix"
    for token in re.split(r"[_.]", lower):
        if token in _DENY_TOKENS:
            return f"name {name!r} contains the denied word {token!r}"
    return None


def check_ref(ref: str) -> str | None:
    """Why ``module:qualname`` may not be called, or None when it is allowed."""
    module, sep, qualname = ref.partition(":")
    if not sep or not qualname or _UNSAFE_REF.search(ref):
        return f"{ref!r} is not a module:qualname reference"
    if module not in ALLOWED_MODULES:
        return f"module {module!r} is not on the allowlist"
    for part in qualname.split("."):
        if part.startswith("_") or not part:
            return f"{ref!r} reaches a private name"
    return denied_name(qualname.rsplit(".", 1)[-1])
