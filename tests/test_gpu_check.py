"""scripts/gpu_check.sh runs here, on CI, before a GPU ever sees it.

Its --dry-run mode runs every stage against the host build (no GPU): the build, the
test stage (the GPU tests must be reported as skipped, never as passed), the benchmark's
CPU path. The sanitizer stage is judged by memcheck's ERROR SUMMARY line, which is
checked here with stand-in compute-sanitizers found through $CUDA_HOME/bin: one that
reports no error, one that reports errors but exits 0, one that dies before its summary.
Also: a missing Python.h, a stage that runs out of its time budget, the real (not dry)
stages on a machine without the CUDA build. scripts/junit_summary.py is tested too.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))
import junit_summary  # noqa: E402

from minicnn.device import cuda_available  # noqa: E402

needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")
# the dry run is for machines without a GPU (CI); where there is one, the stages run for real
no_gpu = pytest.mark.skipif(cuda_available(), reason="a GPU is here: scripts/gpu_check.sh runs for real, not dry")


def gpu_check(*args, env=None, timeout=300):
    """Run the script with this Python as PYTHON; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHON": sys.executable, "PATH": os.environ.get("PATH", "")}
    full_env.pop("GPU_CHECK_DRY_RUN", None)
    full_env.update(env or {})
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def summary(out, stage):
    return (out / f"{stage}.txt").read_text()


# --------------------------------------------------------------------------- junit_summary.py
def junit(tmp_path, cases):
    body = "".join(f'<testcase classname="t" name="{name}">{inner}</testcase>' for name, inner in cases)
    path = tmp_path / "results.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    return path


def test_junit_summary_counts_and_verdicts(tmp_path):
    skip = '<skipped type="pytest.skip" message="no CUDA device">x</skipped>'
    path = junit(tmp_path, [("a", ""), ("b", skip), ("c", skip)])
    status, lines = junit_summary.summarize(path)
    assert status == 0 and lines == ["passed 1, failed 0, errors 0, skipped 2", "skipped 2: no CUDA device"]
    status, lines = junit_summary.summarize(path, fail_on_skip="no CUDA device|not built")
    assert status == 1 and "did not run here" in lines[-1]
    path = junit(tmp_path, [("a", '<failure message="boom">x</failure>'), ("b", '<error message="e">x</error>')])
    status, lines = junit_summary.summarize(path)
    assert status == 1 and lines[0] == "passed 0, failed 1, errors 1, skipped 0" and lines[1] == "FAILED t::a"
    assert junit_summary.summarize(junit(tmp_path, []))[0] == 2                # no test ran
    assert junit_summary.summarize(tmp_path / "missing.xml")[0] == 2


# --------------------------------------------------------------------------- the dry run
@no_gpu
@needs_bash
@pytest.mark.skipif(sys.platform != "linux", reason="the GPU machines run Linux")
def test_dry_run_build_test_and_bench(tmp_path):
    pytest.importorskip("setuptools", minversion="70.1", reason="the build needs setuptools >= 70.1 (the test extra)")
    for stage in ("build", "test", "bench"):
        result = gpu_check("--dry-run", stage, tmp_path)
        text = summary(tmp_path, stage)
        assert result.returncode == 0, f"{stage} failed:\n{text}\n{result.stdout}\n{result.stderr}"
        first, gpu, head, _, mode = text.splitlines()[:5]
        assert first == f"gpu_check {stage}: PASS"
        assert gpu.startswith("gpu: ") and head.startswith("head: ") and mode == "mode: dry run (host build, no GPU expected)"
        assert "FAIL" not in text and text.splitlines()[-1].startswith("total: ")
    build = summary(tmp_path, "build")
    assert "Python.h at " in build and "pip install --dry-run --no-index --no-build-isolation --no-deps -e ." in build
    assert "minicnn._host imports" in build
    test = summary(tmp_path, "test")
    # the GPU tests skipped, and said so: never counted as passed
    assert "GPU tests, both loaders (-m gpu): passed 0, failed 0, errors 0, skipped" in test
    assert "no CUDA device" in test
    assert "the rest (tests/test_bad_input.py, -m 'not gpu'): passed" in test
    assert (tmp_path / "conv_bench.json").is_file() and "conv5" in summary(tmp_path, "bench")


@needs_bash
def test_usage_errors():
    assert gpu_check().returncode == 2
    assert gpu_check("deploy", "/tmp/x").returncode == 2


# --------------------------------------------------------------------------- the sanitizer's verdict
FAKE_SANITIZER = """#!/usr/bin/env bash
# compute-sanitizer's stand-in: drop its options, run the program, end as told
while [ "${1#--}" != "$1" ]; do shift 2; done
echo "========= COMPUTE-SANITIZER"
"$@"
status=$?
%s
"""


def fake_cuda_home(tmp_path, ending):
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    sanitizer = home / "bin" / "compute-sanitizer"
    sanitizer.write_text(FAKE_SANITIZER % ending)
    sanitizer.chmod(0o755)
    return home


@no_gpu
@needs_bash
@pytest.mark.parametrize("ending, verdict, says", [
    ('echo "========= ERROR SUMMARY: 0 errors"; exit $status', "PASS", "memcheck: 0 errors in 1 process(es)"),
    ('echo "========= ERROR SUMMARY: 3 errors"; exit 0', "FAIL", "memcheck: 3 errors"),
    ("exit 0", "FAIL", "memcheck: no ERROR SUMMARY line"),
])
def test_sanitize_is_judged_by_the_error_summary_line(tmp_path, ending, verdict, says):
    # found in $CUDA_HOME/bin, as on a machine where it is not on PATH
    env = {"CUDA_HOME": str(fake_cuda_home(tmp_path, ending))}
    result = gpu_check("--dry-run", "sanitize", tmp_path / "out", env=env)
    text = summary(tmp_path / "out", "sanitize")
    assert text.splitlines()[0] == f"gpu_check sanitize: {verdict}", text
    assert says in text and f"sanitizer: {tmp_path}/cuda/bin/compute-sanitizer" in text
    assert result.returncode == (0 if verdict == "PASS" else 1)
    assert "tests under memcheck: passed" in text          # the tests, for information


@no_gpu
@needs_bash
def test_sanitize_without_a_sanitizer_fails_and_says_where_it_looked(tmp_path):
    env = {"CUDA_HOME": str(tmp_path / "nothing-here"), "PATH": "/usr/bin:/bin"}
    result = gpu_check("--dry-run", "sanitize", tmp_path, env=env)
    assert result.returncode == 1
    assert "compute-sanitizer not found" in summary(tmp_path, "sanitize")


# --------------------------------------------------------------------------- what a GPU box without the CUDA build sees
@no_gpu
@needs_bash
def test_python_headers_missing_is_said_clearly(tmp_path):
    shim = tmp_path / "python3"
    shim.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        # this Python's include folder has no Python.h
        case "$*" in *Python.h*) echo /nonexistent/include/Python.h; exit 0 ;; esac
        exec {sys.executable} "$@"
        """))
    shim.chmod(0o755)
    result = gpu_check("--dry-run", "build", tmp_path / "out", env={"PYTHON": str(shim)})
    text = summary(tmp_path / "out", "build")
    assert result.returncode == 1 and text.startswith("gpu_check build: FAIL")
    assert "Python.h not found at /nonexistent/include/Python.h" in text and "python3-dev" in text
    assert "pip" not in text.split("Python.h not found")[1]            # nothing was tried after it


@needs_bash
def test_later_stages_need_the_cuda_build(tmp_path):
    if list((ROOT / "minicnn").glob("_cuda*.so")):
        pytest.skip("minicnn._cuda is built here")
    for stage in ("test", "bench"):
        result = gpu_check(stage, tmp_path)
        text = summary(tmp_path, stage)
        assert result.returncode == 1 and text.startswith(f"gpu_check {stage}: FAIL")
        assert "minicnn/_cuda*.so is missing; run 'scripts/gpu_check.sh build OUTDIR' first" in text


@no_gpu
@needs_bash
def test_a_stage_that_runs_out_of_time_still_writes_its_summary(tmp_path):
    slow = tmp_path / "test_slow.py"
    slow.write_text("import time\n\ndef test_slow():\n    time.sleep(120)\n")
    result = gpu_check("--dry-run", "test", tmp_path / "out", timeout=120,
                       env={"GPU_CHECK_BUDGET": "25", "GPU_CHECK_SUITE": str(slow)})
    text = summary(tmp_path / "out", "test")
    assert result.returncode == 1 and text.startswith("gpu_check test: FAIL")
    assert "pytest timed out after" in text or "stage's 25 s were spent" in (tmp_path / "out" / "test-suite.log").read_text()
    assert text.splitlines()[-1].startswith("total: ")
