#!/usr/bin/env bash
# The whole GPU round in one command, on a machine with an NVIDIA GPU, CuPy, nvcc,
# pybind11, pytest and hypothesis already installed (no package index needed):
#
#   scripts/gpu_check.sh OUTDIR
#
#   1. build: pip install --no-build-isolation --no-deps -e . with MINICNN_BUILD_CUDA=1,
#      so minicnn._cuda (nvcc + cuBLAS) is built or the build fails loudly
#   2. the GPU tests (every test marked gpu: the op-family cases on the cuda-rawkernel and
#      cuda-pybind11 backends, and tests/test_cuda.py), the host-kernel and nvcc tests,
#      then the whole suite
#   3. compute-sanitizer --tool memcheck over the GPU tests (MINICNN_CUDA_DEBUG=1:
#      every launch synchronized, so a fault is pinned on its kernel)
#   4. benchmarks/conv_bench.py (table + JSON)
#
# Logs and tables go to OUTDIR; OUTDIR/summary.txt says what passed. The script
# goes on after a failed step and exits non-zero at the end if any step failed.
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
FAILED=0
: > "$OUT/summary.txt"

step() {   # step NAME LOGFILE COMMAND...: run, log, record the outcome
    local name=$1 log=$2
    shift 2
    echo "== $name" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    "$@" > "$OUT/$log" 2>&1
    local rc=$?
    local verdict="ok"
    [ $rc -ne 0 ] && { verdict="FAILED (exit $rc)"; FAILED=1; }
    echo "   $verdict in $((SECONDS - start)) s, log: $log" | tee -a "$OUT/summary.txt"
    tail -n 3 "$OUT/$log" | sed 's/^/   | /' | tee -a "$OUT/summary.txt"
}

{
    echo "date: $(date -u)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    nvcc --version 2>&1 | tail -n 2
    $PY -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__)" 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 || true
} > "$OUT/environment.txt"
cat "$OUT/environment.txt"

step "build (pip install --no-build-isolation --no-deps -e ., MINICNN_BUILD_CUDA=1)" build.log \
    env MINICNN_BUILD_CUDA=1 $PY -m pip install -v --no-build-isolation --no-deps -e .
step "extensions import" import.log \
    $PY -c "import minicnn._host, minicnn._cuda, minicnn.device as d; assert d.cuda_available(), 'CuPy sees no GPU'; print('ok')"

step "GPU tests, both loaders (pytest -m gpu)" test_cuda.log \
    $PY -m pytest tests -m gpu -v -rs --junitxml="$OUT/test_cuda.xml"
step "host-kernel and nvcc tests" test_kernels.log \
    $PY -m pytest tests/test_conv.py tests/test_pool.py tests/test_norm.py tests/test_activation.py \
        tests/test_loss.py tests/test_linear.py tests/test_optim.py tests/test_backends.py \
        tests/test_nvcc_compile.py -m "not gpu" -v -rs --junitxml="$OUT/test_kernels.xml"
step "whole test suite, default loader (rawkernel)" test_all_rawkernel.log \
    env MINICNN_CUDA_LOADER=rawkernel $PY -m pytest tests -q -rs
step "whole test suite, pybind11 loader" test_all_pybind11.log \
    env MINICNN_CUDA_LOADER=pybind11 $PY -m pytest tests -q -rs

if command -v compute-sanitizer > /dev/null 2>&1; then
    # CuPy's memory pool carves arrays out of larger blocks, so an overrun into a
    # neighbour would go unseen: MINICNN_CUPY_NO_POOL=1 (tests/conftest.py) gives each
    # array its own cudaMalloc. MINICNN_CUDA_DEBUG=1 synchronizes after every launch.
    # The "quick" hypothesis profile (tests/conftest.py) keeps the gradchecks' thousands of
    # launches short under memcheck; every kernel still runs at every size of the GPU cases.
    step "compute-sanitizer memcheck over the GPU tests" sanitizer.log \
        env MINICNN_CUDA_DEBUG=1 MINICNN_CUPY_NO_POOL=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
            --target-processes all $PY -m pytest tests -m gpu -q -x -rs --hypothesis-profile=quick
    grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -n 1 | tee -a "$OUT/summary.txt"
else
    echo "== compute-sanitizer not found: sanitizer step NOT run" | tee -a "$OUT/summary.txt"
    FAILED=1
fi

step "conv_bench (batch 128)" conv_bench.log \
    $PY benchmarks/conv_bench.py --json "$OUT/conv_bench.json" --table "$OUT/conv_bench.txt"

echo
if [ $FAILED -eq 0 ]; then echo "ALL STEPS PASSED" | tee -a "$OUT/summary.txt"; else echo "SOME STEPS FAILED" | tee -a "$OUT/summary.txt"; fi
exit $FAILED
