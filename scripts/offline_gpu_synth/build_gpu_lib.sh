#!/bin/bash
# Here, once (no GPU needed): llama-cpp-python with CUDA for sm_90 (H100, H200), built on this
# machine's CPU, so that a lent GPU machine plays from its first minute instead of building for
# about 270 s of its 900. Needs .gpu/llama_src.tgz (prepare.sh), nvcc 13 (this image has
# /usr/local/cuda-13.0) and cuBLAS, which the image lacks: taken from PyPI's nvidia-cublas wheel
# into a private copy of the toolkit. This machine has no libcuda, so GGML_CUDA_NO_VMM=ON
# (llama.cpp then pools GPU memory without the driver's virtual memory management).
# Writes .gpu/llama_gpu.txz (27 MB), which call3.sh loads, if it can, instead of waiting for
# the build from source that call1.sh starts.
# Usage, from the repo root: bash scripts/offline_gpu_synth/build_gpu_lib.sh [JOBS]
# Measured 28 Nov: 4,638 s with one job beside the loop on the two cores, for the same flags
# run by hand against the system toolkit with cuBLAS added (this script, which keeps the
# toolkit untouched, has not itself been run end to end).
set -euo pipefail
G=${GPU_DIR:-.gpu}; PY=$PWD/.venv/bin/python; JOBS=${1:-2}
CUDA_SRC=${CUDA_SRC:-/usr/local/cuda-13.0}
tmp=$(mktemp -d)
cp -a "$CUDA_SRC" "$tmp/cuda"
$PY -m pip download -q --no-deps --only-binary=:all: -d "$tmp/whl" "nvidia-cublas==13.0.*"
(cd "$tmp/whl" && unzip -q nvidia_cublas-*.whl)
cp "$tmp"/whl/nvidia/cu13/include/*.h "$tmp/cuda/include/"
cp "$tmp"/whl/nvidia/cu13/lib/libcublas.so.13 "$tmp"/whl/nvidia/cu13/lib/libcublasLt.so.13 "$tmp/cuda/lib64/"
ln -s libcublas.so.13 "$tmp/cuda/lib64/libcublas.so"; ln -s libcublasLt.so.13 "$tmp/cuda/lib64/libcublasLt.so"
tar xzf $G/llama_src.tgz -C "$tmp"
export PATH=$tmp/cuda/bin:$PATH CUDACXX=$tmp/cuda/bin/nvcc CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF -DGGML_CUDA_NO_VMM=ON -DGGML_CUDA_NCCL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DCUDAToolkit_ROOT=$tmp/cuda"
start=$(date +%s)
(cd "$tmp/strip" && $PY -m pip wheel -q --no-deps -w "$tmp/out" .)
echo "build seconds $(( $(date +%s) - start ))"
# The build also installs the libraries into the source tree, with their symlinks (the wheel
# holds three copies of each: 185 MB); xz, so that it travels beside .gpu/c in one call.
tar cJf $G/llama_gpu.txz -C "$tmp/strip" --exclude=llama_cpp/server --exclude=__pycache__ llama_cpp
rm -rf "$tmp"
ls -la $G/llama_gpu.txz
