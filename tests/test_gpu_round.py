"""scripts/gpu_round.sh runs here, on CI, before a GPU ever sees it.

Its --dry-run runs every step in a form that needs no GPU: the plan with each step's limit,
the build as pip's --dry-run, the pytest steps collecting their tests (a selection that names
no test fails), the benchmarks small on the CPU, memcheck only where a compute-sanitizer is
found. Checked here: every step passes and has its row, OUTDIR holds at most the 4 files that
come back from a device call, a step that fails or hangs does not stop the round, a round
killed with kill -9 still leaves its summary, a missing Python.h is named, usage errors;
memcheck's verdict comes from its ERROR SUMMARY line (stand-in compute-sanitizers);
scripts/junit_summary.py's counts; the switch that turns CuPy's memory pool off.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_round.sh"
sys.path.insert(0, str(ROOT / "scripts"))
import junit_summary  # noqa: E402

OUTDIR_FILES = {"summary.txt", "step.json", "logs.tgz", "conv_bench.txt"}
ROW = re.compile(r"^(?P<step>[\w-]+)\s+(?P<status>PASS|FAIL|TIMEOUT|NOT RUN)\s+(?P<seconds>\d+)\s+(?P<result>.*)$")

needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None
                                or sys.platform != "linux", reason="needs Linux, bash and coreutils' timeout")


def plan_steps():
    """The step names of the script's PLAN, in order."""
    text = SCRIPT.read_text()
    plan = text[text.index('PLAN="\\') + len('PLAN="\\'):]
    plan = plan[:plan.index('"')]
    return [line.split()[0] for line in plan.strip().splitlines()]


def gpu_round(*args, env=None, timeout=900, **popen):
    """Run the script with this Python as PYTHON; the CompletedProcess."""
    full_env = {**os.environ, "PYTHON": sys.executable}
    for name in ("GPU_ROUND_ONLY", "GPU_ROUND_FAIL", "GPU_ROUND_HANG", "GPU_ROUND_BUDGET", "OUT"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def rows(out):
    """{step: (status, seconds, result)} of OUTDIR/summary.txt's table."""
    found = {}
    for line in (out / "summary.txt").read_text().splitlines():
        match = ROW.match(line)
        if match:
            found[match["step"]] = (match["status"], int(match["seconds"]), match["result"])
    return found


# --------------------------------------------------------------------------- the whole dry run
@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    pytest.importorskip("torch", reason="the dry run times PyTorch's half of the step benchmark on the CPU")
    pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")
    out = tmp_path_factory.mktemp("round")
    return gpu_round("--dry-run", out), out


@needs_bash
def test_the_dry_run_passes_every_step_of_the_plan(dry_run):
    result, out = dry_run
    found = rows(out)
    assert result.returncode == 0, (out / "summary.txt").read_text() + result.stdout[-3000:] + result.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0] == f"gpu_round: PASS (all {len(plan_steps())} steps)"
    assert [line.split(":")[0] for line in summary[1:7]] == ["head", "gpu", "software", "nvcc", "date", "mode"]
    assert summary[6].startswith("mode:     dry run")
    assert set(found) == set(plan_steps()) and {status for status, _, _ in found.values()} == {"PASS"}
    # the pytest steps collected tests (their selections name tests that exist)
    for step in ("numerics", "ops", "conv-alexnet", "step-f64", "forward-f32", "rest"):
        assert re.match(r"dry run: \d+(/\d+)? tests? collected", found[step][2]), found[step]
    assert re.match(r"minicnn / oneDNN-fp32 = \d+\.\d\d; minicnn / torch-im2col = \d+\.\d\d", found["step-minicnn"][2])
    assert summary[-2].startswith("total: ") and summary[-1].startswith("step:  minicnn / oneDNN-fp32 = ")


@needs_bash
def test_the_dry_run_prints_the_plan_with_each_steps_limit(dry_run):
    result, _ = dry_run
    plan = re.findall(r"^  ([\w-]+)\s+(\d+)  ", result.stdout, re.M)
    assert [name for name, _ in plan] == plan_steps()
    assert all(int(limit) > 0 for _, limit in plan)


@needs_bash
def test_the_dry_run_leaves_at_most_the_four_files_a_device_call_brings_back(dry_run):
    _, out = dry_run
    assert {p.name for p in out.iterdir()} == OUTDIR_FILES and all(p.is_file() for p in out.iterdir())
    with tarfile.open(out / "logs.tgz") as logs:
        names = logs.getnames()
    for step in plan_steps():
        assert f"gpu_round/{step}.log" in names
    assert {"gpu_round/summary.txt", "gpu_round/step_torch.json", "gpu_round/conv_bench.json"} <= set(names)


# --------------------------------------------------------------------------- failures inside the round
@needs_bash
def test_a_failing_step_does_not_stop_the_round(tmp_path):
    result = gpu_round("--dry-run", tmp_path, env={"GPU_ROUND_ONLY": "^(nvrtc|numerics|step-f64)$",
                                                   "GPU_ROUND_FAIL": "^numerics$"})
    found = rows(tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "summary.txt").read_text().startswith("gpu_round: FAIL (1 of the steps did not pass)")
    assert found["numerics"][0] == "FAIL" and "failed on purpose" in found["numerics"][2]
    # the steps after it ran; the ones GPU_ROUND_ONLY does not name did not (toolchain and build always do)
    assert found["step-f64"][0] == "PASS" and found["nvrtc"][0] == "PASS"
    assert set(found) == {"toolchain", "build", "nvrtc", "numerics", "step-f64"}


@needs_bash
def test_a_hanging_step_is_stopped_and_the_budget_holds(tmp_path):
    result = gpu_round("--dry-run", tmp_path, timeout=300,
                       env={"GPU_ROUND_ONLY": "^(nvrtc|numerics)$", "GPU_ROUND_HANG": "^nvrtc$", "GPU_ROUND_BUDGET": "30"})
    found = rows(tmp_path)
    assert result.returncode == 1
    status, seconds, text = found["nvrtc"]
    assert status == "TIMEOUT" and "stopped at its limit" in text and seconds <= 30
    assert found["numerics"][:2] == ("NOT RUN", 0) and "budget was spent" in found["numerics"][2]
    assert (tmp_path / "summary.txt").read_text().splitlines()[-1].startswith("total: ")


@needs_bash
def test_a_round_killed_mid_step_leaves_its_summary_and_logs(tmp_path):
    """What the device tool does at its time limit: the whole round killed, no chance to clean up."""
    # the hanging step's own `timeout` outlives the kill (it has a process group of its own, as on the
    # device): a small budget keeps it short
    env = {**os.environ, "PYTHON": sys.executable, "GPU_ROUND_ONLY": "^nvrtc$", "GPU_ROUND_HANG": "^nvrtc$",
           "GPU_ROUND_BUDGET": "25"}
    round_ = subprocess.Popen(["bash", str(SCRIPT), "--dry-run", str(tmp_path)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "toolchain" not in rows_or_nothing(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
    finally:
        os.killpg(round_.pid, signal.SIGKILL)
        round_.wait()
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("gpu_round: RUNNING")          # the verdict never came: it says so
    assert "toolchain" in rows(tmp_path)
    with tarfile.open(tmp_path / "logs.tgz") as logs:
        assert "gpu_round/toolchain.log" in logs.getnames()


def rows_or_nothing(out):
    return rows(out) if (out / "summary.txt").is_file() else {}


@needs_bash
def test_a_missing_python_header_is_named(tmp_path):
    shim = tmp_path / "python3"
    shim.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        # this Python's include folder has no Python.h
        case "$*" in *Python.h*) echo /nonexistent/include/Python.h; exit 0 ;; esac
        exec {sys.executable} "$@"
        """))
    shim.chmod(0o755)
    result = gpu_round("--dry-run", tmp_path / "out", env={"PYTHON": str(shim), "GPU_ROUND_ONLY": "^nothing$"})
    status, _, text = rows(tmp_path / "out")["toolchain"]
    assert result.returncode == 1 and status == "FAIL"
    assert "MISSING: Python.h (not at /nonexistent/include/Python.h: install python3-dev" in text


@needs_bash
def test_usage_errors():
    assert gpu_round().returncode == 2                       # no OUTDIR and no $OUT
    assert gpu_round("--verbose", "/tmp/x").returncode == 2
    assert gpu_round("a", "b").returncode == 2


# --------------------------------------------------------------------------- memcheck's verdict
FAKE_SANITIZER = """#!/usr/bin/env bash
# compute-sanitizer's stand-in: drop its options, run the program, end as told
while [ "${1#--}" != "$1" ]; do shift 2; done
echo "========= COMPUTE-SANITIZER"
"$@" > /dev/null
status=$?
%s
"""


@needs_bash
@pytest.mark.parametrize("ending, status, says", [
    ('echo "========= ERROR SUMMARY: 0 errors"; exit $status', "PASS", "0 errors (1 ERROR SUMMARY line(s))"),
    ('echo "========= Invalid __global__ write of size 4 bytes"; echo "========= ERROR SUMMARY: 3 errors"; exit 0',
     "FAIL", "3 errors (========= Invalid __global__ write of size 4 bytes)"),
    ('echo "========= Error: Device not supported"; exit 0', "FAIL", "no ERROR SUMMARY line: memcheck did not finish"),
])
def test_memcheck_is_judged_by_its_error_summary_line(tmp_path, ending, status, says):
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    sanitizer = home / "bin" / "compute-sanitizer"
    sanitizer.write_text(FAKE_SANITIZER % ending)
    sanitizer.chmod(0o755)
    # found in $CUDA_HOME/bin, as on a machine where it is not on PATH
    gpu_round("--dry-run", tmp_path / "out", env={"CUDA_HOME": str(home), "GPU_ROUND_ONLY": "^memcheck-numerics$"})
    found = rows(tmp_path / "out")["memcheck-numerics"]
    assert found[0] == status and says in found[2], found


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
    status, lines = junit_summary.summarize(path, fail_on_skip=".")           # the round's decisive steps
    assert status == 1 and "did not run here" in lines[-1]
    path = junit(tmp_path, [("a", '<failure message="boom">x</failure>'), ("b", '<error message="e">x</error>')])
    status, lines = junit_summary.summarize(path)
    assert status == 1 and lines[0] == "passed 0, failed 1, errors 1, skipped 0" and lines[1] == "FAILED t::a"
    assert junit_summary.summarize(junit(tmp_path, []))[0] == 2                # no test ran
    assert junit_summary.summarize(tmp_path / "missing.xml")[0] == 2


# --------------------------------------------------------------------------- CuPy's memory pool off
def test_minicnn_cupy_no_pool_turns_cupys_memory_pool_off(monkeypatch):
    from minicnn import device
    allocators = []
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(set_allocator=allocators.append)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for setting, expected in (("1", [None]), ("0", []), (None, [])):
        if setting is None:
            monkeypatch.delenv("MINICNN_CUPY_NO_POOL", raising=False)
        else:
            monkeypatch.setenv("MINICNN_CUPY_NO_POOL", setting)
        monkeypatch.setattr(device, "_pool_setting_applied", False)
        allocators.clear()
        device.apply_cupy_pool_setting()
        device.apply_cupy_pool_setting()                     # once per process
        assert allocators == expected, setting
