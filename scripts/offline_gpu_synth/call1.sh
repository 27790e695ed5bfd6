# device call 1 (carry .gpu/a .gpu/whl .gpu/bwhl .gpu/llama_src.tgz): tools check, Python deps, model part a, start the CUDA build of llama.cpp (background)
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc; free -g | head -2
python3 -c "import sys, numpy, scipy; print(sys.version.split()[0], numpy.__version__, scipy.__version__)"
which nvcc cmake ninja; nvcc --version | tail -2
mkdir -p /tmp/site /tmp/bsite /tmp/m /tmp/build
cp .gpu/a/* /tmp/m/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl 2>&1 | tail -3
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/bsite .gpu/bwhl/*.whl 2>&1 | tail -3
tar xzf .gpu/llama_src.tgz -C /tmp/build
cat > /tmp/build.sh <<'EOS'
cd /tmp/build/strip
export PYTHONPATH=/tmp/bsite
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON"
export CMAKE_BUILD_PARALLEL_LEVEL=16
start=$(date +%s)
python3 -m pip install -v --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/llama . > /tmp/build.log 2>&1
echo $? > /tmp/build.rc
echo "build seconds $(( $(date +%s) - start ))" >> /tmp/build.log
EOS
setsid nohup bash /tmp/build.sh > /dev/null 2>&1 < /dev/null &
sleep 25
tail -n 8 /tmp/build.log
ls /tmp/site | head -80 | tr '\n' ' '
