"""MINICNN_DEBUG_BUILD: minicnn._host built for a debugger, and docs/kernels.md's gdb recipe run as written.

The recipe (docs/kernels.md, "Stepping through a kernel") runs examples/step_into_max_pool.py
under gdb, stops in max_pool_forward<float> at the kernel's loop, then at window 3 of the
four, and prints its index and coordinates. Here a debug _host is built into a temporary
folder (the checkout's own minicnn/_host*.so is left alone), the recipe's command is taken
from the docs and run in batch mode, and what it prints is checked against the kernel's
source and against the output the docs show.
"""

import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "kernels.md"


def setup_py(monkeypatch, debug):
    """setup.py's globals and the keyword arguments it passes to setup(), nothing built."""
    import setuptools
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setenv("MINICNN_BUILD_CUDA", "0")
    if debug is None:
        monkeypatch.delenv("MINICNN_DEBUG_BUILD", raising=False)
    else:
        monkeypatch.setenv("MINICNN_DEBUG_BUILD", debug)
    names = runpy.run_path(str(ROOT / "setup.py"))
    return names, captured


def host_flags(captured):
    (host,) = [e for e in captured["ext_modules"] if e.name == "minicnn._host"]
    return host.extra_compile_args


@pytest.mark.parametrize("value", [None, "0", ""])
def test_setup_builds_an_optimised_host_by_default(monkeypatch, value):
    _, captured = setup_py(monkeypatch, value)
    flags = host_flags(captured)
    assert "-O3" in flags and "-O0" not in flags and "-g" not in flags and "-DMC_DEBUG_BUILD" not in flags


@pytest.mark.parametrize("value", ["1", "yes", "ON"])
def test_MINICNN_DEBUG_BUILD_replaces_the_optimisation_by_O0_g(monkeypatch, value):
    _, captured = setup_py(monkeypatch, value)
    flags = host_flags(captured)
    assert flags[:3] == ["-O0", "-g", "-DMC_DEBUG_BUILD"]
    assert not [f for f in flags if re.fullmatch(r"-O[123s]|-Ofast|-ffast-math", f)], flags
    # the same numerics as the optimised build: the same bits, only slower
    _, optimised = setup_py(monkeypatch, None)
    assert [f for f in host_flags(optimised) if f != "-O3"] == flags[3:]
    assert "-ffp-contract=off" in flags and "-std=c++17" in flags


def test_a_change_of_flags_forces_a_rebuild(monkeypatch, tmp_path):
    """setuptools rebuilds only when a source is newer than the library: switching to a debug
    build (or back) must rebuild all the same."""
    names, _ = setup_py(monkeypatch, None)
    command = SimpleNamespace(build_temp=str(tmp_path))
    optimised = SimpleNamespace(name="minicnn._host", extra_compile_args=["-O3", "-std=c++17"])
    debug = SimpleNamespace(name="minicnn._host", extra_compile_args=["-O0", "-g", "-std=c++17"])
    changed = names["BuildExt"].flags_changed
    assert changed(command, optimised)          # no record: build
    assert not changed(command, optimised)      # the same flags: setuptools' own rule decides
    assert changed(command, debug)
    assert not changed(command, debug)
    assert changed(command, optimised)


def recipe():
    """The gdb command docs/kernels.md shows, and the output it says gdb prints."""
    text = DOCS.read_text()
    commands = [line for line in re.findall(r"^MINICNN_NUM_THREADS=1 gdb -batch .*$", text, re.M)]
    assert len(commands) == 1, "docs/kernels.md should show one gdb -batch recipe"
    shown = re.search(r"gdb prints[^\n]*\n+```\n(.*?)```", text, re.S)
    assert shown, "docs/kernels.md should show what the recipe prints, after 'gdb prints'"
    return commands[0], shown.group(1).splitlines()


def kernel_loop_line():
    """The line of max_pool_forward's MC_ROW_LOOP in csrc/pool.cuh (1-based)."""
    lines = (ROOT / "csrc" / "pool.cuh").read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if "MC_KERNEL max_pool_forward(" in line)
    return next(n for n in range(start, len(lines)) if "MC_ROW_LOOP(" in lines[n]) + 1


def test_the_recipe_script_is_five_lines_and_runs_max_pool2d_on_the_host_kernels():
    script = ROOT / "examples" / "step_into_max_pool.py"
    code = [line for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) <= 5 and "max_pool2d" in script.read_text()
    command, _ = recipe()
    assert shlex.split(command)[-2:] == ["python", "examples/step_into_max_pool.py"]
    # the docs show the script as it is
    shown = re.search(r"The script, `examples/step_into_max_pool.py`.*?```python\n(.*?)```", DOCS.read_text(), re.S)
    assert shown and shown.group(1).splitlines() == code


@pytest.fixture(scope="module")
def debug_lib(tmp_path_factory):
    """minicnn built with MINICNN_DEBUG_BUILD=1 into a temporary folder (the package and its
    _host, as a regular install lays them out)."""
    folder = tmp_path_factory.mktemp("debug_build")
    env = dict(os.environ, MINICNN_DEBUG_BUILD="1", MINICNN_BUILD_CUDA="0")
    built = subprocess.run([sys.executable, "setup.py", "build", "--build-lib", str(folder / "lib"),
                            "--build-temp", str(folder / "temp")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert built.stderr.count("MINICNN_DEBUG_BUILD: building minicnn._host with -O0 -g") == 1   # said once
    return folder / "lib"


def test_the_debug_build_says_it_is_one(debug_lib):
    env = dict(os.environ, PYTHONPATH=str(debug_lib))
    probe = "import minicnn, minicnn._host as h; print(minicnn.__file__, h.debug_build, h.openmp)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=debug_lib.parent, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where, debug, _ = out.stdout.split()
    assert Path(where).is_relative_to(debug_lib) and debug == "True"
    host = pytest.importorskip("minicnn._host", reason="this checkout's minicnn._host is not built")
    assert host.debug_build is False        # this checkout's own build is untouched


def test_the_gdb_recipe_stops_in_max_pool_forward_and_prints_the_window(debug_lib):
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed (apt-get install gdb): the recipe cannot be run here")
    command, shown = recipe()
    words = shlex.split(command)
    assert words[0] == "MINICNN_NUM_THREADS=1"
    env = dict(os.environ, MINICNN_NUM_THREADS="1", PYTHONPATH=str(debug_lib))
    words[words.index("python")] = sys.executable     # this test's Python, with its packages
    run = subprocess.run(words[1:], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    if "ptrace: Operation not permitted" in out:
        pytest.skip("gdb may not trace processes here (ptrace is forbidden, e.g. a container without SYS_PTRACE)")
    assert run.returncode == 0, out[-4000:]

    loop = kernel_loop_line()
    # stopped in the kernel, at its row loop, with the launch's arguments (two output rows) ...
    assert re.search(r"hit Breakpoint 1, max_pool_forward<float> \(count=2, .*H=4, W=4, kh=2, kw=2, sh=2, sw=2, "
                     rf"ph=0, pw=0, OH=2, OW=2\) at csrc/pool\.cuh:{loop}\n{loop}\s+MC_ROW_LOOP\(row, count, ox, OW\)",
                     out), out
    # ... then two lines further, at row 1, column 1, which is (oy, ox) = (1, 1) of the 2x2 output
    assert re.search(rf"hit Breakpoint 2\.\d, max_pool_forward<float> \(.*\) at csrc/pool\.cuh:{loop + 2}\n", out), out
    assert re.search(r"^\$1 = 1\n\$2 = 1\n\$3 = 1$", out, re.M), out

    # what the docs say it prints is what it printed ("..." stands for the pointers)
    for line in (line for line in shown if line.strip()):
        pattern = ".*".join(re.escape(part) for part in line.split("..."))
        assert re.search(pattern, out), f"docs/kernels.md shows {line!r}, which gdb did not print:\n{out}"
