#!/usr/bin/env bash
# The GPU round, in stages short enough for machines that stop a command after 10 minutes
# (each stage gives up on its steps after GPU_CHECK_BUDGET seconds, 470 by default, and
# still writes its summary). Run one stage per call, in this order:
#
#   scripts/gpu_check.sh build    OUTDIR   Python.h; build minicnn._host and minicnn._cuda (nvcc + cuBLAS)
#                                          with pip --no-index --no-build-isolation --no-deps -e . (or
#                                          setup.py build_ext --inplace where site-packages are read-only);
#                                          both import and CuPy sees the GPU; NVRTC compiles every kernel
#   scripts/gpu_check.sh test     OUTDIR   the GPU tests (pytest -m gpu: every op-family case on both
#                                          loaders, the GPU numerics, the AlexNet step), then the rest
#   scripts/gpu_check.sh sanitize OUTDIR   compute-sanitizer memcheck over the GPU tests (quick hypothesis
#                                          profile), judged by its ERROR SUMMARY line (not by pytest)
#   scripts/gpu_check.sh bench    OUTDIR   benchmarks/conv_bench.py: table and JSON
#   scripts/gpu_check.sh all      OUTDIR   the four in turn (where no time limit applies)
#
# The build stage leaves the extensions in minicnn/ (minicnn/_host*.so, minicnn/_cuda*.so);
# the later stages use them as they are and never rebuild (run them from this checkout).
# Each stage writes OUTDIR/<stage>.txt, a summary to trust at a glance: PASS or FAIL, the
# GPU, the commit, and one line per step (pytest steps: passed, failed, errors, skipped,
# with the skip reasons); the full logs are OUTDIR/<stage>-<step>.log. Exit status 0 when
# the stage passed, 1 when it failed, 2 for a usage error.
#
#   scripts/gpu_check.sh --dry-run STAGE OUTDIR
#
# runs the same stages against the host build on a machine without a GPU, so the script's
# logic runs on CI (tests/test_gpu_check.py) before a GPU ever sees it: the build makes
# minicnn._host only (pip only with --dry-run: nothing is installed), the GPU tests are
# expected to skip ("no CUDA device"), the other steps run short selections, the
# sanitizer runs only if GPU_CHECK_SANITIZER names one, the benchmark is its CPU path at
# batch 1.
#
# Environment: PYTHON (default python3), CUDA_HOME (nvcc and compute-sanitizer are also
# looked for in $CUDA_HOME/bin), GPU_CHECK_SANITIZER (a compute-sanitizer to use),
# GPU_CHECK_HEAD (the commit, where this copy has no .git), GPU_CHECK_BUDGET (seconds a
# stage may spend), GPU_CHECK_SUITE (pytest arguments of the test stage's suite step).
set -u

usage() {
    echo "usage: scripts/gpu_check.sh [--dry-run] build|test|sanitize|bench|all OUTDIR" >&2
    exit 2
}

DRY=${GPU_CHECK_DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
STAGE=${1:-}
OUT=${2:-}
[ -n "$STAGE" ] && [ -n "$OUT" ] || usage
case "$STAGE" in build|test|sanitize|bench|all) ;; *) usage ;; esac

mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-470}

# ----------------------------------------------------------------------------- what every summary says
head_line() {
    if [ -n "${GPU_CHECK_HEAD:-}" ]; then echo "$GPU_CHECK_HEAD (given by GPU_CHECK_HEAD)"; return; fi
    local sha
    if sha=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); then
        local branch changes=""
        branch=$(git -C "$ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null)
        [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && changes=", with uncommitted changes"
        echo "$sha (branch $branch$changes)"
    else
        echo "unknown (no git checkout here; pass GPU_CHECK_HEAD=<commit>)"
    fi
}

gpu_line() {
    if ! command -v nvidia-smi > /dev/null 2>&1; then echo "none (nvidia-smi not found)"; return; fi
    local gpus
    gpus=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
           | sed 's/, / | /g' | paste -sd ';' -)
    echo "${gpus:-none (nvidia-smi lists no GPU)}"
}

SUMMARY=""
STAGE_FAILED=0
STAGE_START=$SECONDS

begin_stage() {   # begin_stage NAME
    SUMMARY="$OUT/$1.txt"
    STAGE_FAILED=0
    STAGE_START=$SECONDS
    {
        echo "gpu_check $1: RUNNING"
        echo "gpu:  $(gpu_line)"
        echo "head: $(head_line)"
        echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        if [ "$DRY" = 1 ]; then echo "mode: dry run (host build, no GPU expected)"; else echo "mode: GPU round"; fi
        echo "steps:"
    } > "$SUMMARY"
    echo "== gpu_check $1 -> $SUMMARY"
}

note() {   # note VERDICT TEXT...: one line of the summary
    local verdict=$1
    shift
    [ "$verdict" = FAIL ] && STAGE_FAILED=1
    printf '  %-5s %s\n' "$verdict" "$*" | tee -a "$SUMMARY"
}

end_stage() {   # end_stage NAME: the verdict goes on the first line
    local verdict=PASS
    [ $STAGE_FAILED -ne 0 ] && verdict=FAIL
    echo "total: $((SECONDS - STAGE_START)) s" >> "$SUMMARY"
    sed -i "1s/.*/gpu_check $1: $verdict/" "$SUMMARY"
    echo "== gpu_check $1: $verdict"
}

# run NAME LOG COMMAND...: run a command within what is left of the stage's budget.
# Sets RC (124 when it ran out of time) and SPENT; the output goes to OUTDIR/LOG.
run() {
    local name=$1 log=$2
    shift 2
    local left=$((BUDGET - (SECONDS - STAGE_START)))
    if [ $left -lt 15 ]; then
        RC=124; SPENT=0
        echo "not run: the stage's $BUDGET s were spent" > "$OUT/$log"
        return
    fi
    local start=$SECONDS
    echo "   $name ..."
    timeout -k 10 "$left" "$@" > "$OUT/$log" 2>&1
    RC=$?
    SPENT=$((SECONDS - start))
}

outcome() {   # outcome: "ok" or why not, from RC
    case $RC in
        0) echo ok ;;
        124|137) echo "timed out after $SPENT s" ;;
        *) echo "exit status $RC" ;;
    esac
}

step() {   # step NAME LOG COMMAND...: a plain step, judged by its exit status
    local name=$1 log=$2
    run "$@"
    if [ $RC -eq 0 ]; then note ok "$name ($SPENT s, $log)"; else note FAIL "$name: $(outcome) ($log)"; fi
}

pytest_step() {   # pytest_step NAME LOG FAIL_ON_SKIP_REGEX PYTEST_ARGS...: judged by the JUnit XML
    local name=$1 log=$2 skips=$3
    shift 3
    local xml="$OUT/${log%.log}.xml"
    rm -f "$xml"
    run "$name" "$log" "$PY" -m pytest -rs -p no:cacheprovider --junitxml="$xml" "$@"
    local counts status judge=("$PY" scripts/junit_summary.py "$xml")
    [ -n "$skips" ] && judge+=(--fail-on-skip "$skips")
    counts=$("${judge[@]}")
    status=$?
    if [ $status -eq 0 ] && { [ $RC -eq 0 ] || [ $RC -eq 5 ]; }; then
        note ok "$name: $(echo "$counts" | head -n 1) ($SPENT s, $log)"
    else
        note FAIL "$name: $(echo "$counts" | head -n 1); pytest $(outcome) ($log)"
    fi
    echo "$counts" | tail -n +2 | sed 's/^/          /' | tee -a "$SUMMARY"
}

have_extensions() {   # the build stage's products, or a FAIL note saying to run it
    local missing=""
    ls minicnn/_host*.so > /dev/null 2>&1 || missing="minicnn/_host*.so "
    if [ "$DRY" != 1 ]; then ls minicnn/_cuda*.so > /dev/null 2>&1 || missing="${missing}minicnn/_cuda*.so"; fi
    if [ -n "$missing" ]; then
        note FAIL "not built: $missing is missing; run 'scripts/gpu_check.sh build OUTDIR' first"
        return 1
    fi
    note ok "using the built extensions: $(ls minicnn/_host*.so minicnn/_cuda*.so 2>/dev/null | paste -sd ' ' -)"
}

find_sanitizer() {
    local candidate
    for candidate in "${GPU_CHECK_SANITIZER:-}" "$(command -v compute-sanitizer 2>/dev/null)" \
                     "${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer}" /usr/local/cuda/bin/compute-sanitizer \
                     "$(dirname "$(command -v nvcc 2>/dev/null || echo .)")/compute-sanitizer"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

# ----------------------------------------------------------------------------- the stages
stage_build() {
    begin_stage build
    if ! command -v "$PY" > /dev/null 2>&1; then
        note FAIL "no '$PY' on PATH (set PYTHON)"; end_stage build; return
    fi
    "$PY" -W ignore - > "$OUT/environment.txt" 2>&1 <<'EOF'
import platform, sys
print("python", sys.version.split()[0], platform.platform())
for name in ("numpy", "cupy", "torch", "pybind11", "pytest", "hypothesis", "setuptools", "pip"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, "not importable:", type(e).__name__)
EOF
    { command -v nvcc > /dev/null 2>&1 && nvcc --version | tail -n 1; } >> "$OUT/environment.txt" 2>&1
    note ok "environment: $(paste -sd ';' "$OUT/environment.txt" | sed 's/;/; /g') (environment.txt)"

    local header
    header=$("$PY" -c "import os, sysconfig; print(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))")
    if [ ! -f "$header" ]; then
        note FAIL "Python.h not found at $header: nothing can be compiled against this Python; install its headers (python3-dev or python3.X-dev)"
        end_stage build; return
    fi
    note ok "Python.h at $header"

    local cuda=1 writable pip_ok=0
    [ "$DRY" = 1 ] && cuda=0
    writable=$("$PY" -c "import os, sysconfig; print(int(os.access(sysconfig.get_paths()['purelib'], os.W_OK)))")
    if [ "$DRY" = 1 ]; then
        # check pip's arguments and the offline build backend, installing nothing
        step "pip install --dry-run --no-index --no-build-isolation --no-deps -e ." build-pip.log \
            env MINICNN_BUILD_CUDA=0 "$PY" -m pip install --dry-run --no-index --no-build-isolation --no-deps -e .
    elif [ "$writable" = 1 ]; then
        run "pip install -e ." build-pip.log \
            env MINICNN_BUILD_CUDA=1 "$PY" -m pip install -v --no-index --no-build-isolation --no-deps -e .
        if [ $RC -eq 0 ]; then
            pip_ok=1
            note ok "pip install --no-index --no-build-isolation --no-deps -e . ($SPENT s, build-pip.log)"
        else
            note info "pip install -e . failed ($(outcome), build-pip.log): building in place instead"
        fi
    else
        note info "site-packages are not writable: building in place (setup.py build_ext --inplace)"
    fi
    # the extensions must end up in minicnn/, where the later stages look for them
    if [ $pip_ok -eq 0 ] || ! ls minicnn/_host*.so > /dev/null 2>&1 || { [ $cuda = 1 ] && ! ls minicnn/_cuda*.so > /dev/null 2>&1; }; then
        step "setup.py build_ext --inplace (MINICNN_BUILD_CUDA=$cuda)" build-inplace.log \
            env MINICNN_BUILD_CUDA=$cuda "$PY" setup.py build_ext --inplace
    fi
    grep -h "minicnn setup:" "$OUT"/build-*.log 2>/dev/null | sort -u | sed 's/^/          /' | tee -a "$SUMMARY"

    if [ "$DRY" = 1 ]; then
        step "minicnn._host imports" build-import.log "$PY" -c "import minicnn._host as h; print(h.__file__)"
    else
        step "minicnn._host and minicnn._cuda import, CuPy sees the GPU" build-import.log "$PY" -c "
import minicnn._host as h, minicnn._cuda as c, cupy
from minicnn.device import cuda_available
print(h.__file__, c.__file__, 'cupy', cupy.__version__)
assert cuda_available(), 'CuPy sees no CUDA device'"
        # compiles (and caches on disk) every kernel the RawKernel loader will ask for
        step "NVRTC compiles every kernel (RawKernel loader)" build-nvrtc.log "$PY" -c "
import numpy as np
from minicnn.backends import cuda
loader = cuda.RawKernelLoader()
for kernel in cuda.kernel_names():
    for dtype in (np.float32, np.float64):
        loader.function(kernel, np.dtype(dtype))
print(len(cuda.kernel_names()), 'kernels x 2 types with', cuda.nvrtc_options())"
    fi
    end_stage build
}

stage_test() {
    begin_stage test
    if have_extensions; then
        # the GPU tests (marked gpu): a skip there means something was not checked on the GPU
        local must_run="no CUDA device|not built|not installed"
        local suite=${GPU_CHECK_SUITE:-tests}
        if [ "$DRY" = 1 ]; then
            must_run=""                         # no GPU here: they must skip, and say so
            suite=${GPU_CHECK_SUITE:-tests/test_bad_input.py}
        fi
        pytest_step "GPU tests, both loaders (-m gpu)" test-gpu.log "$must_run" -q tests -m gpu
        # shellcheck disable=SC2086 # word splitting wanted: a list of test paths
        pytest_step "the rest ($suite, -m 'not gpu')" test-suite.log "" -q $suite -m "not gpu"
    fi
    end_stage test
}

stage_sanitize() {
    begin_stage sanitize
    local sanitizer
    if ! sanitizer=$(find_sanitizer); then
        note FAIL "compute-sanitizer not found (GPU_CHECK_SANITIZER, PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin, nvcc's folder)"
    elif have_extensions; then
        note ok "sanitizer: $sanitizer"
        # CuPy's memory pool carves arrays out of larger blocks, so an overrun into a neighbour
        # would go unseen: MINICNN_CUPY_NO_POOL=1 (tests/conftest.py) gives each array its own
        # cudaMalloc. MINICNN_CUDA_DEBUG=1 synchronizes after every launch, naming the kernel.
        # The "quick" hypothesis profile keeps the gradchecks' thousands of launches short; every
        # kernel still runs at every size of the GPU cases. The float64 AlexNet step is left out:
        # its kernels are the op cases' at AlexNet's sizes, and its CPU reference would eat the budget.
        local tests=(tests -m gpu -k "not alexnet_training_step")
        [ "$DRY" = 1 ] && tests=(tests/test_bad_input.py tests/test_gpu_numerics.py)
        run "memcheck" sanitize-memcheck.log env MINICNN_CUDA_DEBUG=1 MINICNN_CUPY_NO_POOL=1 \
            "$sanitizer" --tool memcheck --target-processes all --print-limit 200 \
            "$PY" -m pytest -q -rs -p no:cacheprovider --hypothesis-profile=quick \
            --junitxml="$OUT/sanitize-memcheck.xml" "${tests[@]}"
        # the verdict is memcheck's own: "========= ERROR SUMMARY: N errors", one per process checked
        local lines errors
        lines=$(grep -E "ERROR SUMMARY: [0-9]+ error" "$OUT/sanitize-memcheck.log")
        errors=$(echo "$lines" | grep -oE "[0-9]+ error" | awk '{s += $1} END {print s + 0}')
        if [ -z "$lines" ]; then
            note FAIL "memcheck: no ERROR SUMMARY line, it did not finish ($(outcome); sanitize-memcheck.log)"
        elif [ "$errors" -ne 0 ]; then
            note FAIL "memcheck: $errors errors ($(echo "$lines" | paste -sd ';' -); sanitize-memcheck.log)"
        else
            note ok "memcheck: 0 errors in $(echo "$lines" | wc -l) process(es) ($SPENT s, sanitize-memcheck.log)"
        fi
        # for information: the tests themselves (the test stage judges them)
        echo "          tests under memcheck: $("$PY" scripts/junit_summary.py "$OUT/sanitize-memcheck.xml" | head -n 1)" \
            | tee -a "$SUMMARY"
    fi
    end_stage sanitize
}

stage_bench() {
    begin_stage bench
    if have_extensions; then
        local args=()
        [ "$DRY" = 1 ] && args=(--device cpu --batch 1 --repeats 1 --warmup 0 --layers conv5)
        step "benchmarks/conv_bench.py ${args[*]}" bench-conv.log \
            "$PY" benchmarks/conv_bench.py "${args[@]}" --json "$OUT/conv_bench.json" --table "$OUT/conv_bench.txt"
        [ -f "$OUT/conv_bench.txt" ] && sed 's/^/          /' "$OUT/conv_bench.txt" | tee -a "$SUMMARY" > /dev/null
    fi
    end_stage bench
}

FAILED=0
for s in $( [ "$STAGE" = all ] && echo build test sanitize bench || echo "$STAGE" ); do
    "stage_$s"
    [ $STAGE_FAILED -ne 0 ] && FAILED=1
done
exit $FAILED
