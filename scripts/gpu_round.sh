#!/usr/bin/env bash
# The whole GPU round in ONE call, for a lent GPU machine that keeps nothing between calls and
# stops a command after 10 minutes (docs/kernels.md, "The GPU round"):
#
#   scripts/gpu_round.sh [--dry-run] [OUTDIR]          OUTDIR defaults to $OUT
#
# Each step has its own time limit and the round a budget (GPU_ROUND_BUDGET, 450 s): a step gets
# the smaller of its limit and what is left, and a step that fails or runs out of time does not
# stop the round. minicnn._host and minicnn._cuda build in the background (pip's offline editable
# install, nvcc --threads 0) while NVRTC compiles every kernel and PyTorch's half of the step
# benchmark runs; then the decisive correctness tests on both loaders (a skip counts as a
# failure), minicnn's half of the step benchmark, a trace of one batch-128 step on each loader,
# two short memcheck runs, and with the time left conv_bench and the other GPU tests.
#
# OUTDIR gets at most 4 files: summary.txt (the table, one row written as each step ends, so a
# killed round still leaves it), step.json (benchmarks/alexnet_bench.py's JSON), conv_bench.txt,
# logs.tgz (every log and JUnit XML; packed again after each step). The logs are written under
# runs/gpu_round/ first. Exit status: 0 when every step passed, 1 when one did not, 2 for a usage error.
#
# --dry-run: the plan with each step's limit, then each step in a form that needs no GPU (the
# pytest steps collect their tests, the benchmarks run small on the CPU, the build is pip's
# --dry-run), in about a minute; tests/test_gpu_round.py runs it on CI.
#
# Environment:
#   GPU_ROUND_BUDGET=SECONDS   the round's budget (450; the device call's limit should leave ~90 s more)
#   GPU_ROUND_ONLY=REGEX       run only the steps whose names match (toolchain and build always run;
#                              the build is skipped when it is current: a warm machine's second round)
#   GPU_ROUND_HEAD=COMMIT      the commit, where the copy has no .git
#   GPU_ROUND_WORKERS=N        pytest-xdist workers for the ops and rest steps (8; where xdist imports)
#   PYTHON                     the Python to use (python3)
#   CUDA_HOME                  nvcc and compute-sanitizer are also looked for in $CUDA_HOME/bin
#   GPU_ROUND_FAIL=REGEX, GPU_ROUND_HANG=REGEX   dry run only: the matching steps fail, or hang
#                              until their limit, on purpose (tests/test_gpu_round.py)
set -u

usage() {
    echo "usage: scripts/gpu_round.sh [--dry-run] [OUTDIR]   (OUTDIR defaults to \$OUT)" >&2
    exit 2
}

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
case "${1:-}" in -*) usage ;; esac
[ $# -le 1 ] || usage
OUTDIR=${1:-${OUT:-}}
[ -n "$OUTDIR" ] || usage
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_ROUND_BUDGET:-450}
ONLY=${GPU_ROUND_ONLY:-}
WORKERS=${GPU_ROUND_WORKERS:-8}
LOGS=$ROOT/runs/gpu_round
SUMMARY=$OUTDIR/summary.txt
START=$SECONDS
rm -rf "$LOGS" && mkdir -p "$LOGS" || exit 2
rm -f "$SUMMARY" "$OUTDIR/step.json" "$OUTDIR/conv_bench.txt" "$OUTDIR/logs.tgz"
# every step imports this checkout's minicnn, whether or not pip's editable install worked
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DRY PY ROOT LOGS OUTDIR WORKERS

# ----------------------------------------------------------------------------- the plan
# name, limit in seconds, what the step checks. The order is the order they run in; build runs
# in the background from the start and is waited for by the first step that needs it.
PLAN="\
toolchain          30  Python.h, nvcc and the cuBLAS headers are found (setup.py's own lookup)
build             300  in the background: MINICNN_BUILD_CUDA=1 pip install --no-index --no-build-isolation --no-deps -e . (skipped when current)
nvrtc             120  NVRTC compiles every kernel, float and double, through CuPy (the RawKernel loader; fills CuPy's cache)
step-torch        150  PyTorch's half of the step benchmark: benchmarks/alexnet_bench.py --runners torch-cudnn torch-im2col
numerics           90  tests/test_gpu_numerics.py on both loaders: bit for bit or a few ulps from the host build
ops               180  every op family on cuda-rawkernel and cuda-pybind11 against the NumPy reference (quick hypothesis profile)
conv-alexnet       90  the convolutions at AlexNet's sizes on both loaders (tests/test_conv.py)
step-f64          150  the float64 AlexNet training step equals the CPU reference on both loaders (tests/test_training_step.py)
forward-f32        90  the float32 AlexNet forward within the GEMM bounds on both loaders (tests/test_training_step.py)
step-minicnn      150  minicnn's half of the step benchmark, both loaders: OUTDIR/step.json and the ratio line
trace              90  python -m minicnn trace alexnet --batch 128 --device cuda, on each loader (where the time goes)
memcheck-numerics 150  compute-sanitizer --tool memcheck over tests/test_gpu_numerics.py, CuPy's pool off
memcheck-step     150  compute-sanitizer --tool memcheck over one AlexNet step at batch 2 on each loader, CuPy's pool off
conv-bench        120  benchmarks/conv_bench.py: OUTDIR/conv_bench.txt
rest              600  the other GPU tests (pytest -m gpu, the files not run above)"

# the op families: each case runs on every backend, the two CUDA loaders among them
OP_FILES="tests/test_activation.py tests/test_backends.py tests/test_batchnorm.py tests/test_conv.py
tests/test_conv_dilation.py tests/test_conv_padding.py tests/test_linear.py tests/test_loss.py tests/test_loss_options.py
tests/test_matmul_getitem.py tests/test_norm.py tests/test_optim.py tests/test_pool.py tests/test_pool_options.py
tests/test_tensor_ops.py"
export OP_FILES

limit_of() { echo "$PLAN" | awk -v name="$1" '$1 == name { print $2 }'; }
selected() { [ -z "$ONLY" ] || [ "$1" = toolchain ] || [ "$1" = build ] || echo "$1" | grep -Eq "$ONLY"; }

# ----------------------------------------------------------------------------- the summary
head_line() {
    if [ -n "${GPU_ROUND_HEAD:-}" ]; then echo "$GPU_ROUND_HEAD (given by GPU_ROUND_HEAD)"; return; fi
    local sha branch changes=""
    if sha=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); then
        branch=$(git -C "$ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null)
        [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && changes=", with uncommitted changes"
        echo "$sha (branch $branch$changes)"
    else
        echo "unknown (no git checkout here; pass GPU_ROUND_HEAD=<commit>)"
    fi
}

gpu_line() {
    local gpus
    gpus=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
           | sed 's/, / | /g' | paste -sd ';' -)
    echo "${gpus:-none (nvidia-smi lists no GPU)}"
}

versions_line() {
    timeout 60 "$PY" - 2>&1 <<'EOF' | tail -n 1
import platform
found = [f"python {platform.python_version()}"]
for name in ("numpy", "cupy", "torch", "pybind11", "pytest", "hypothesis", "setuptools"):
    try:
        module = __import__(name)
        found.append(f"{name} {module.__version__}")
        if name == "cupy":
            found.append(f"CUDA runtime {module.cuda.runtime.runtimeGetVersion()}, "
                         f"driver {module.cuda.runtime.driverGetVersion()}")
        if name == "torch" and module.cuda.is_available():
            found.append(f"torch CUDA {module.version.cuda}, cuDNN {module.backends.cudnn.version()}")
    except Exception as e:
        found.append(f"{name} not importable ({type(e).__name__})")
print("; ".join(found))
EOF
}

FAILED=0
STEPS_RUN=0
row() {   # row STEP STATUS SECONDS RESULT: one line of the table, at once
    printf '%-18s %-8s %5s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
}

pack_logs() {   # logs.tgz again, whole or not at all
    cp "$SUMMARY" "$LOGS/summary.txt" 2>/dev/null
    tar -czf "$OUTDIR/.logs.tgz.part" -C "$ROOT/runs" gpu_round 2>/dev/null
    # status 1: a log grew while tar read it (the build's, in the background); the archive is whole
    [ $? -le 1 ] && mv -f "$OUTDIR/.logs.tgz.part" "$OUTDIR/logs.tgz"
}

{
    echo "gpu_round: RUNNING"
    echo "head:     $(head_line)"
    echo "gpu:      $(gpu_line)"
    echo "software: $(versions_line)"
    echo "nvcc:     $( { command -v nvcc > /dev/null && nvcc --version || "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version; } 2>/dev/null | grep -m1 release || echo 'not found')"
    echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    mode="GPU round"
    [ "$DRY" = 1 ] && mode="dry run (no GPU used: each step's stand-in, see the plan)"
    echo "mode:     $mode; budget $BUDGET s${ONLY:+; only steps matching '$ONLY'}"
    echo
    printf '%-18s %-8s %5s  %s\n' step status s result
    printf '%-18s %-8s %5s  %s\n' ---- ------ - ------
} > "$SUMMARY"
cat "$SUMMARY"

echo
echo "plan (step, limit in seconds, what it checks):"
echo "$PLAN" | while read -r name limit what; do
    selected "$name" && printf '  %-18s %4s  %s\n' "$name" "$limit" "$what"
done
echo

# ----------------------------------------------------------------------------- running a step
# A step is a function step_NAME, run as `bash -c step_NAME` under `timeout` (all functions are
# exported), its output in runs/gpu_round/NAME.log. It writes its one-line result with `result`;
# its exit status is its verdict.
result() { echo "$*" > "$LOGS/$STEP.result"; echo "result: $*"; }
export -f result

begin_step() {   # begin_step NAME: prints the timeout's limit, or nothing when no time is left
    local name=$1 limit left
    limit=$(limit_of "$name")
    left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt "$limit" ] && limit=$left
    [ "$limit" -ge 10 ] && echo "$limit"
}

launch() {   # launch NAME LIMIT: the step's process, in this shell's background or foreground
    local name=$1 limit=$2 command="step_${1//-/_}"
    if [ "$DRY" = 1 ] && [ -n "${GPU_ROUND_FAIL:-}" ] && echo "$name" | grep -Eq "$GPU_ROUND_FAIL"; then
        command="result 'failed on purpose (GPU_ROUND_FAIL)'; exit 1"
    elif [ "$DRY" = 1 ] && [ -n "${GPU_ROUND_HANG:-}" ] && echo "$name" | grep -Eq "$GPU_ROUND_HANG"; then
        command="sleep 3600"
    fi
    STEP=$name timeout -k 5 "$limit" bash -c "$command" > "$LOGS/$name.log" 2>&1
}

finish_step() {   # finish_step NAME LIMIT EXIT_STATUS SECONDS: the row
    local name=$1 limit=$2 rc=$3 spent=$4 status text
    text=$(cat "$LOGS/$name.result" 2>/dev/null)
    case $rc in
        0) status=PASS ;;
        124|137) status=TIMEOUT
                 text="stopped at its limit of $limit s${text:+; $text}; last output: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-120)" ;;
        *) status=FAIL
           [ -n "$text" ] || text="exit status $rc; last output: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-160)" ;;
    esac
    [ $status = PASS ] || FAILED=$((FAILED + 1))
    STEPS_RUN=$((STEPS_RUN + 1))
    row "$name" "$status" "$spent" "$text (log: $name.log)"
    pack_logs
}

NEED_NO_BUILD="toolchain nvrtc step-torch"    # the steps that run while the extensions build

run_step() {   # run_step NAME: in the foreground, after the build unless it needs none
    local name=$1 limit start rc
    selected "$name" || return 0
    if ! limit=$(begin_step "$name"); then
        row "$name" "NOT RUN" 0 "the round's $BUDGET s budget was spent"
        FAILED=$((FAILED + 1))
        return 0
    fi
    case " $NEED_NO_BUILD " in *" $name "*) ;; *) wait_for_build ;; esac
    echo "== $name (at most $limit s) ..."
    start=$SECONDS
    launch "$name" "$limit"
    rc=$?
    finish_step "$name" "$limit" "$rc" $((SECONDS - start))
}

BUILD_PID=""
start_build() {
    local limit
    if ! limit=$(begin_step build); then
        row build "NOT RUN" 0 "the round's $BUDGET s budget was spent"; FAILED=$((FAILED + 1)); return
    fi
    echo "== build (in the background, at most $limit s) ..."
    BUILD_LIMIT=$limit
    BUILD_START=$SECONDS
    launch build "$limit" &
    BUILD_PID=$!
}

wait_for_build() {   # the build's row, once, when a step first needs it
    [ -n "$BUILD_PID" ] || return 0
    local rc
    echo "== waiting for the build ..."
    wait "$BUILD_PID"
    rc=$?
    BUILD_PID=""
    finish_step build "$BUILD_LIMIT" "$rc" $((SECONDS - BUILD_START))
}

# ----------------------------------------------------------------------------- helpers the steps use
# pytest_step SKIP_POLICY PYTEST_ARGS...: pytest with a JUnit XML, judged by scripts/junit_summary.py.
# SKIP_POLICY "strict": any skip is a failure (the decisive steps); "missing": a skip whose reason says
# the GPU or a build is missing is a failure. In a dry run the tests are only collected.
pytest_step() {
    local policy=$1 xml="$LOGS/$STEP.xml" counts status rc
    shift
    if [ "$DRY" = 1 ]; then
        "$PY" -m pytest -p no:cacheprovider --collect-only -q "$@"
        rc=$?
        counts=$(grep -Eo '^[0-9]+(/[0-9]+)? tests? collected' "$LOGS/$STEP.log" | tail -n 1)
        if [ $rc -eq 0 ] && [ -n "$counts" ]; then result "dry run: $counts"; return 0; fi
        result "dry run: collecting failed (pytest exit status $rc): the selection names no test"
        return 1
    fi
    local skips="no CUDA device|not built|not installed|not importable"
    [ "$policy" = strict ] && skips="."
    "$PY" -m pytest -p no:cacheprovider -q -rs --junitxml="$xml" "$@"
    rc=$?
    counts=$("$PY" scripts/junit_summary.py "$xml" --fail-on-skip "$skips")
    status=$?
    echo "$counts"
    result "$(echo "$counts" | head -n 1)$(echo "$counts" | sed -n '2,4p' | sed 's/^/; /' | tr -d '\n')"
    [ $status -eq 0 ] && [ $rc -eq 0 ]
}

xdist_args() {   # -n WORKERS where pytest-xdist imports
    "$PY" -c "import xdist" 2> /dev/null && echo "-n $WORKERS"
}

find_sanitizer() {
    local candidate
    for candidate in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer}" \
                     /usr/local/cuda/bin/compute-sanitizer; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

# memcheck COMMAND...: the command under compute-sanitizer's memcheck, judged by its ERROR SUMMARY
# line(s), not by the command's exit status. CuPy's pool off (MINICNN_CUPY_NO_POOL=1: each array its
# own cudaMalloc, so memcheck sees each array's bounds); every launch synchronised (MINICNN_CUDA_DEBUG=1).
memcheck() {
    local sanitizer lines errors
    if ! sanitizer=$(find_sanitizer); then
        if [ "$DRY" = 1 ]; then result "dry run: no compute-sanitizer here (the GPU round needs one)"; return 0; fi
        result "compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)"
        return 1
    fi
    echo "sanitizer: $sanitizer"
    MINICNN_CUPY_NO_POOL=1 MINICNN_CUDA_DEBUG=1 "$sanitizer" --tool memcheck --print-limit 100 "$@"
    echo "the program's exit status: $?"
    lines=$(grep -E "ERROR SUMMARY: [0-9]+ error" "$LOGS/$STEP.log")
    errors=$(echo "$lines" | grep -oE "[0-9]+ error" | awk '{s += $1} END {print s + 0}')
    if [ -z "$lines" ]; then
        result "no ERROR SUMMARY line: memcheck did not finish ($(grep -m1 -E '^=+ (Error|ERROR)' "$LOGS/$STEP.log" | cut -c1-100))"
        return 1
    fi
    if [ "$errors" -ne 0 ]; then
        result "$errors errors ($(grep -m1 -E '^=+ Invalid|^=+ Program hit' "$LOGS/$STEP.log" | cut -c1-120))"
        return 1
    fi
    result "0 errors ($(echo "$lines" | wc -l) ERROR SUMMARY line(s))"
}
export -f pytest_step xdist_args find_sanitizer memcheck

# ----------------------------------------------------------------------------- the steps
step_toolchain() {
    local header missing=() plan
    header=$("$PY" -c "import os, sysconfig; print(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))")
    if [ -f "$header" ]; then
        echo "Python.h: $header"
    else
        echo "Python.h: MISSING at $header"
        missing+=("Python.h (not at $header: install python3-dev or python3.X-dev; nothing can be compiled against this Python)")
    fi
    # setup.py's own search for nvcc and cuBLAS; with MINICNN_BUILD_CUDA=1 it names every missing piece
    local force=1
    [ "$DRY" = 1 ] && force=""
    plan=$(MINICNN_BUILD_CUDA=$force "$PY" setup.py --name 2>&1)
    echo "$plan"
    local cuda
    cuda=$(echo "$plan" | grep -oE "minicnn._cuda will be built: .*|cannot be built: .*|skipping minicnn._cuda: .*" | tail -n 1)
    if echo "$plan" | grep -q "cannot be built"; then
        missing+=("${cuda#cannot be built: }")
    elif [ -z "$cuda" ]; then
        missing+=("setup.py failed: $(echo "$plan" | tail -n 1)")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        result "MISSING: $(printf '%s; ' "${missing[@]}" | sed 's/; $//')"
        return 1
    fi
    result "Python.h at $header; $cuda"
}

build_stamp() {   # what the build depends on, as one hash
    { cat csrc/* src/* setup.py pyproject.toml minicnn/backends/sources.py; "$PY" --version; } 2>&1 | sha256sum | cut -c1-16
}

step_build() {
    if [ "$DRY" = 1 ]; then
        # pip's arguments and the offline build backend, installing nothing
        MINICNN_BUILD_CUDA=0 "$PY" -m pip install --dry-run --no-index --no-build-isolation --no-deps -e . \
            && result "dry run: pip install --dry-run --no-index --no-build-isolation --no-deps -e . works" && return 0
        result "dry run: pip install --dry-run -e . failed"
        return 1
    fi
    local stamp
    stamp=$(build_stamp)
    if [ "$(cat build/gpu_round.stamp 2>/dev/null)" = "$stamp" ] && ls minicnn/_host*.so minicnn/_cuda*.so > /dev/null 2>&1; then
        result "current (built by an earlier round on this machine from the same sources): not rebuilt"
        return 0
    fi
    rm -f build/gpu_round.stamp
    local how="pip install -e ."
    if ! MINICNN_BUILD_CUDA=1 "$PY" -m pip install -v --no-index --no-build-isolation --no-deps -e .; then
        how="setup.py build_ext --inplace (pip failed)"
    elif ! ls minicnn/_host*.so minicnn/_cuda*.so > /dev/null 2>&1; then
        how="setup.py build_ext --inplace (pip left no extension in minicnn/)"
    fi
    if [ "$how" != "pip install -e ." ]; then        # the steps import this checkout's minicnn/
        echo "== $how"
        MINICNN_BUILD_CUDA=1 "$PY" setup.py build_ext --inplace || { result "$how failed too"; return 1; }
    fi
    if ! "$PY" -c "import minicnn._host, minicnn._cuda; print(minicnn._host.__file__, minicnn._cuda.__file__)"; then
        result "built by $how, but minicnn._host or minicnn._cuda does not import"
        return 1
    fi
    mkdir -p build && echo "$stamp" > build/gpu_round.stamp
    result "minicnn._host and minicnn._cuda built by $how for $(grep -m1 -oE 'sm_[0-9]+(, sm_[0-9]+)*' "$LOGS/build.log")"
}

step_nvrtc() {
    "$PY" - <<'EOF'
import os
import numpy as np
from minicnn.backends import sources
names = sources.kernel_names()
if os.environ["DRY"] == "1":
    line = f"dry run: would compile {len(names)} kernels x 2 types with {' '.join(sources.nvrtc_options())}"
else:
    from minicnn.backends import cuda
    loader = cuda.RawKernelLoader()
    for kernel in names:
        for dtype in (np.float32, np.float64):
            loader.function(kernel, np.dtype(dtype))
    line = f"{len(names)} kernels x 2 types compiled with {' '.join(sources.nvrtc_options())}"
print(line)
open(os.path.join(os.environ["LOGS"], "nvrtc.result"), "w").write(line + "\n")
EOF
}

bench_args() {   # the step benchmark's size: the paper's on the GPU, two images on the CPU in a dry run
    if [ "$DRY" = 1 ]; then echo "--device cpu --batch 2 --warmup 0 --repeats 1"; else echo "--device cuda"; fi
}

step_step_torch() {
    local runners="torch-cudnn torch-im2col"
    [ "$DRY" = 1 ] && runners="torch-onednn torch-im2col"
    # shellcheck disable=SC2046 # word splitting wanted
    "$PY" benchmarks/alexnet_bench.py $(bench_args) --runners $runners --json "$LOGS/step_torch.json"
    local rc=$?
    result "$("$PY" -c "
import json, sys
r = json.load(open(sys.argv[1]))['results']
print('; '.join(f'{n}: {v[\"ms\"]:.2f} ms' if 'ms' in v else f'{n}: {v[\"error\"]}' for n, v in r.items()))" \
        "$LOGS/step_torch.json" 2>/dev/null || echo "no JSON written")"
    return $rc
}

step_numerics() { pytest_step strict tests/test_gpu_numerics.py; }

step_ops() {
    # shellcheck disable=SC2046,SC2086 # word splitting wanted
    pytest_step strict $OP_FILES -m gpu -k "not alexnet_sizes" --hypothesis-profile=quick $(xdist_args)
}

step_conv_alexnet() { pytest_step strict tests/test_conv.py -m gpu -k alexnet_sizes; }
step_step_f64() { pytest_step strict tests/test_training_step.py -m gpu -k training_step; }
step_forward_f32() { pytest_step strict tests/test_training_step.py -m gpu -k forward_float32; }

step_step_minicnn() {
    local runners="minicnn-rawkernel minicnn-pybind11" merge=()
    [ "$DRY" = 1 ] && runners="minicnn-kernels"
    [ -f "$LOGS/step_torch.json" ] && merge=(--merge "$LOGS/step_torch.json")
    # shellcheck disable=SC2046,SC2086 # word splitting wanted
    "$PY" benchmarks/alexnet_bench.py $(bench_args) --runners $runners "${merge[@]}" --json "$OUTDIR/step.json"
    local rc=$?
    result "$(grep -v '^\s*$' "$LOGS/step-minicnn.log" | tail -n 1)"
    return $rc
}

step_trace() {
    local loader failed=0 summary="" took
    if [ "$DRY" = 1 ]; then
        "$PY" -m minicnn trace alexnet --batch 2 --device cpu > "$LOGS/trace-cpu.txt" 2>&1 || failed=1
        result "dry run: one step at batch 2 on the CPU traced (trace-cpu.txt)"
        return $failed
    fi
    for loader in rawkernel pybind11; do
        MINICNN_CUDA_LOADER=$loader "$PY" -m minicnn trace alexnet --batch 128 --device cuda \
            > "$LOGS/trace-$loader.txt" 2>&1 || failed=1
        took=$(grep -m1 -oE 'summary: [0-9.]+ ms' "$LOGS/trace-$loader.txt" | cut -d' ' -f2-)
        summary="$summary$loader ${took:-failed}; "
    done
    result "one traced step (each launch between two synchronisations): ${summary%; } (trace-<loader>.txt)"
    return $failed
}

step_memcheck_numerics() {
    local tests=(tests/test_gpu_numerics.py)
    [ "$DRY" = 1 ] && tests=(--collect-only tests/test_gpu_numerics.py)
    memcheck "$PY" -m pytest -p no:cacheprovider -q "${tests[@]}"
}

step_memcheck_step() {
    local runners=(minicnn-rawkernel minicnn-pybind11) size=(--device cuda)
    [ "$DRY" = 1 ] && runners=(minicnn-kernels) && size=(--device cpu)
    memcheck "$PY" benchmarks/alexnet_bench.py "${size[@]}" --batch 2 --warmup 0 --repeats 1 --no-trace \
        --runners "${runners[@]}" --json ""
}

step_conv_bench() {
    local size=()
    [ "$DRY" = 1 ] && size=(--device cpu --batch 1 --repeats 1 --warmup 0 --layers conv5)
    "$PY" benchmarks/conv_bench.py "${size[@]}" --json "$LOGS/conv_bench.json" --table "$OUTDIR/conv_bench.txt" || {
        result "conv_bench failed: $(grep -v '^\s*$' "$LOGS/conv-bench.log" | tail -n 1)"; return 1; }
    result "OUTDIR/conv_bench.txt: $(grep -c '^conv' "$OUTDIR/conv_bench.txt") rows"
}

step_rest() {
    local ignore=() file
    for file in $OP_FILES tests/test_gpu_numerics.py tests/test_training_step.py; do ignore+=(--ignore="$file"); done
    # shellcheck disable=SC2046 # word splitting wanted
    pytest_step missing tests -m gpu "${ignore[@]}" $(xdist_args)
}
export -f step_toolchain build_stamp step_build step_nvrtc bench_args step_step_torch step_numerics step_ops \
          step_conv_alexnet step_step_f64 step_forward_f32 step_step_minicnn step_trace step_memcheck_numerics \
          step_memcheck_step step_conv_bench step_rest

# ----------------------------------------------------------------------------- the round
run_step toolchain
start_build
for name in $(echo "$PLAN" | awk '{ print $1 }' | grep -vxE 'toolchain|build'); do
    run_step "$name"
done
wait_for_build

{
    echo
    echo "total: $((SECONDS - START)) s of the $BUDGET s budget"
    ratio=$(grep -h "^minicnn / " "$LOGS/step-minicnn.log" 2>/dev/null | tail -n 1)
    [ -n "$ratio" ] && echo "step:  $ratio"
} | tee -a "$SUMMARY"
verdict="PASS (all $STEPS_RUN steps)"
[ $FAILED -ne 0 ] && verdict="FAIL ($FAILED of the steps did not pass)"
sed -i "1s/.*/gpu_round: $verdict/" "$SUMMARY"
pack_logs
echo "gpu_round: $verdict; $OUTDIR: $(cd "$OUTDIR" && ls | paste -sd ' ' -)"
[ $FAILED -eq 0 ]
