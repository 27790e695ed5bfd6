"""Calling a library function from JSON arguments, and the worker process that does it.

Library functions run in a separate worker process, not a thread: C code such as
``math.comb`` on big numbers holds the GIL, so a thread could neither be timed out nor
stop an allocation from eating the machine. The worker limits its own address space, runs
one call at a time, and is killed and replaced when a call overruns its time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import fractions
import importlib
import json
import math
import os
import select
import subprocess
import sys
import threading
import types
from typing import Any

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_MAX_RESULT_CHARS = 20_000
IMPORT_TIMEOUT_S = 120.0
_MAX_ITEMS = 10_000  # items taken from an iterator result before it counts as too large


class CallFailed(Exception):
    """The call raised, overran a limit or returned something JSON cannot carry."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def resolve(ref: str) -> Any:
    """The object named by ``module:qualname`` (``scipy.stats:norm.cdf``)."""
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if part.startswith("_"):
            raise CallFailed("denied", f"{ref!r} reaches a private name")
        target = getattr(target, part)
        if isinstance(target, types.ModuleType):  # no hopping into other modules (numpy.os)
            raise CallFailed("denied", f"{ref!r} reaches into a module")
    return target


def call_plan(tool_metadata: dict[str, Any]) -> dict[str, Any]:
    """What the worker needs to call a tool: its reference and how arguments are passed."""
    plan = tool_metadata.get("python_call") or {}
    return {
        "ref": tool_metadata["python"],
        "positional": list(plan.get("positional", [])),
        "star": plan.get("star"),
    }


def coerce(schema: dict[str, Any], value: Any) -> Any:
    """JSON → Python for a call: whole floats become ints where the schema says integer
    (JSON Schema counts 6.0 as an integer, ``math.gcd`` does not)."""
    kind = schema.get("type")
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "array" and isinstance(value, list):
        items = schema.get("items")
        return [coerce(items, item) for item in value] if isinstance(items, dict) else value
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: coerce(properties.get(key, {}), item) for key, item in value.items()}
    return value


def invoke(plan: dict[str, Any], arguments: dict[str, Any]) -> Any:
    """Call the planned function: positional-only parameters in order, ``*args`` spread,
    the rest as keywords (names from the docstring are not always the C names)."""
    function = resolve(plan["ref"])
    remaining = dict(arguments)
    args: list[Any] = []
    missing = None
    for name in plan["positional"]:
        if name in remaining:
            if missing is not None:
                raise TypeError(f"{name!r} given but the earlier {missing!r} is missing")
            args.append(remaining.pop(name))
        elif missing is None:
            missing = name
    star = plan.get("star")
    if star and star in remaining:
        spread = remaining.pop(star)
        args.extend(spread if isinstance(spread, list) else [spread])
    return function(*args, **remaining)


def to_json(value: Any, *, depth: int = 0) -> Any:
    """``value`` as plain JSON data, or :class:`CallFailed` (``result_not_json``).

    numpy scalars and arrays become Python numbers and lists, complex numbers
    ``{"real", "imag"}``, dates ISO strings, fractions and decimals their exact text, named
    tuples and result objects with ``_asdict`` objects; NaN and infinities their names,
    because JSON has no literal for them.
    """
    if depth > 20:
        raise CallFailed("result_not_json", "result nests too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if value.bit_length() > 14_000:  # over ~4,200 digits, past Python's int→str limit
            raise CallFailed("result_too_large", "result is an integer of over 4,000 digits")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, complex):
        return {"real": to_json(value.real), "imag": to_json(value.imag)}
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, fractions.Fraction | decimal.Decimal):
        return str(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            return to_json(value.item(), depth=depth + 1)
        if isinstance(value, numpy.ndarray):
            if value.size > _MAX_ITEMS:
                raise CallFailed("result_too_large", f"result has {value.size:,} elements")
            return to_json(value.tolist(), depth=depth + 1)
    if hasattr(value, "_asdict"):
        return {str(k): to_json(v, depth=depth + 1) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): to_json(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | range):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_json(item, depth=depth + 1) for item in items]
    if hasattr(value, "__next__"):  # a generator or iterator: take it, boundedly
        items = []
        for item in value:
            items.append(to_json(item, depth=depth + 1))
            if len(items) > _MAX_ITEMS:
                raise CallFailed("result_too_large", f"result yields over {_MAX_ITEMS:,} items")
        return items
    raise CallFailed("result_not_json", f"result is a {type(value).__name__}, not JSON data")


def run_call(
    plan: dict[str, Any], arguments: dict[str, Any], max_chars: int = DEFAULT_MAX_RESULT_CHARS
) -> Any:
    """Call and convert in this process; raises :class:`CallFailed` with a reason."""
    try:
        value = invoke(plan, arguments)
    except MemoryError:
        raise CallFailed("memory", "the call ran out of its memory limit") from None
    except RecursionError:
        raise CallFailed("raised", "RecursionError: maximum recursion depth exceeded") from None
    except Exception as error:
        text = str(error).splitlines()[0][:300] if str(error) else ""
        raise CallFailed("raised", f"{type(error).__name__}: {text}".rstrip(": ")) from None
    result = to_json(value)
    size = len(json.dumps(result))
    if size > max_chars:
        raise CallFailed("result_too_large", f"result is {size:,} characters, over {max_chars:,}")
    return result


def _worker_main() -> None:  # pragma: no cover - runs in the worker process
    """Read one JSON request a line from stdin, answer one JSON line on the saved stdout."""
    import resource
    import warnings

    memory_mb = int(os.environ.get("TOOLDOJO_PYLIB_MEMORY_MB", DEFAULT_MEMORY_MB))
    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    # Functions that print (numpy.info, ...) must not corrupt the protocol on stdout.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "import" in request:  # warm-up: the module, imported before any call is timed
                importlib.import_module(request["import"])
                answer = {"ok": True, "value": None}
                protocol.write(json.dumps(answer) + "\n")
                protocol.flush()
                continue
            answer = {
                "ok": True,
                "value": run_call(request["plan"], request["arguments"], request["max_chars"]),
            }
        except CallFailed as failure:
            answer = {"ok": False, "reason": failure.reason, "message": str(failure)}
        except BaseException as error:
            answer = {"ok": False, "reason": "raised", "message": f"{type(error).__name__}"}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


class Sandbox:
    """One worker process running calls one at a time (thread-safe: calls queue on a lock).

    A call that overruns ``timeout_s`` kills the worker; the next call starts a fresh one.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_chars = max_chars
        self._process: subprocess.Popen[str] | None = None
        self._imported: set[str] = set()  # modules the current worker has imported
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.update(
            TOOLDOJO_PYLIB_MEMORY_MB=str(self.memory_mb),
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        return subprocess.Popen(
            # Run as a script (-P: its folder is not put on sys.path), so the worker
            # imports neither tooldojo nor its dependencies, only what the calls need.
            [sys.executable, "-P", __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def call(
        self, plan: dict[str, Any], arguments: dict[str, Any], *, timeout_s: float | None = None
    ) -> Any:
        """The JSON result of the call, or :class:`CallFailed` with a reason.

        The function's module is imported first, outside the call's time limit: importing
        scipy.stats takes seconds on a loaded machine, and is no fault of the call.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        module = plan["ref"].partition(":")[0]
        with self._lock:
            if module not in self._imported:
                self._exchange({"import": module}, IMPORT_TIMEOUT_S)
                self._imported.add(module)
            request = {"plan": plan, "arguments": arguments, "max_chars": self.max_chars}
            return self._exchange(request, limit)

    def _exchange(self, request: dict[str, Any], limit: float) -> Any:
        """Send one request and wait up to ``limit`` seconds for its answer (lock held)."""
        if self._process is None or self._process.poll() is not None:
            self._process = self._start()
            self._imported = set()
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._kill()
            raise CallFailed("crashed", "the worker process died") from None
        ready, _, _ = select.select([process.stdout], [], [], limit)
        line = process.stdout.readline() if ready else ""
        if not line:
            self._kill()
            if not ready:
                raise CallFailed("timeout", f"the call ran over {limit:g} s")
            raise CallFailed("crashed", "the worker process died during the call")
        answer = json.loads(line)
        if answer["ok"]:
            return answer["value"]
        raise CallFailed(answer["reason"], answer["message"])

    def _kill(self) -> None:
        self._imported = set()
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                assert self._process.stdin is not None
                self._process.stdin.close()
                try:
                    self._process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _worker_main()
