#!/usr/bin/env bash
# Builds llama-cpp-python VERSION from its sdist for this CPU (-march=native, llama.cpp's AMX
# kernels included), with our patches to the llama.cpp it vendors applied, into the wheel folder
# OUT. `make install` runs it once per CPU and patch set. Why a script: pip builds an sdist as it
# is and has no way to patch it.
#   scripts/build_llama_cpp.sh PYTHON VERSION OUT [PATCH...]
set -euo pipefail
python=$1 version=$2 out=$3
shift 3
patches=()
for patch in "$@"; do patches+=("$(realpath "$patch")"); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: -d "$work" \
    "llama-cpp-python==$version"
tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
src="$work/llama_cpp_python-$version"
for patch in "${patches[@]}"; do
    (cd "$src" && git apply --verbose "$patch")
done
# Into a folder of its own first, so that a killed build leaves no wheel in OUT.
"$python" -m pip wheel --quiet --no-deps --no-cache-dir -w "$work/wheel" "$src"
mkdir -p "$out"
mv "$work"/wheel/llama_cpp_python-"$version"-*.whl "$out"/
