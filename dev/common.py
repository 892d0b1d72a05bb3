"""What dev/'s numbered kernel variants share (llm.c's dev/cuda/common.h, in Python).

A kernel's faster versions are written as numbered variants beside it, in a header
dev/<op>_variants.cuh, with the signature of the kernel in csrc/ they may replace.
A driver dev/<op>.py runs one of them:

    python dev/im2col.py 2                   # variant 2 on the CPU (the host build)
    python dev/im2col.py 1 --device cuda     # variant 1 on the GPU (CuPy + NVRTC)

and does what llm.c's drivers do: run the variant on a few shapes, check every
result against the NumPy reference (backends/reference.py) and stop at the first
mismatch, then time it on the real shapes (warm-up runs, then the median).

This module gives a driver its four steps:

    args = parser(__doc__, VARIANTS).parse_args()  # variant number, --device, --threads, --repeats
    loader = variant_loader(HEADER, KERNELS, args) # run(kernel, count, *args) / gemm / xp, as
                                                   # backends/kernels.py's loaders
    check(name, ours, reference, atol)             # ours vs the reference (atol: a number or
                                                   # per-entry bounds), or SystemExit
    ms, cpu_ms = time_ms(lambda: loader.run(...), args)   # medians of args.repeats runs

On the CPU the header is compiled with the host build's own launcher (src/host_launch.h:
the CUDA grid on OpenMP threads) into a small module, cached in dev/build/ and rebuilt
when a source changes. On a GPU it goes through the RawKernel loader (CuPy's NVRTC).
"""

import argparse
import hashlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # minicnn from this checkout, without installing

from minicnn.backends import host  # noqa: E402
from minicnn.backends.sources import host_compile_flags  # noqa: E402

BUILD = ROOT / "dev" / "build"


# --------------------------------------------------------------------------- the command line
def parser(description, variants):
    """The options every driver takes; a driver may add its own before parse_args().
    variants: {number: what it is}. The chosen one is args.variant."""
    lines = "\n".join(f"  {number}  {what}" for number, what in variants.items())
    options = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                      epilog="variants:\n" + lines)
    options.add_argument("variant", type=int, choices=sorted(variants))
    options.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    options.add_argument("--threads", type=int, default=host.available_cores(),
                        help="OpenMP threads of each CPU launch (default: every core)")
    options.add_argument("--repeats", type=int, default=10, help="timed runs (the median is reported)")
    options.add_argument("--warmup", type=int, default=2)
    return options


# --------------------------------------------------------------------------- loading a header of variants
def variant_loader(header, kernels, args):
    """A loader (backends/kernels.py's interface) for ``kernels`` (names) of ``header``."""
    if args.device == "cuda":
        from minicnn.backends.cuda import RawKernelLoader
        return RawKernelLoader(header=header, kernels=kernels)
    module = build_host_module(header, kernels)
    module.set_num_threads(args.threads)
    if not module.openmp and args.threads > 1:
        print("note: built without OpenMP, every launch runs on one thread")
    return host.HostLoader(module)


def build_host_module(header, kernels):
    """Compile ``header``'s ``kernels`` for the CPU with minicnn._host's flags (backends/sources.py), and import the module."""
    import pybind11

    header = Path(header).resolve()
    sources = [header, *sorted((ROOT / "csrc").glob("*.cuh")), ROOT / "src" / "host_launch.h"]
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in sources) + " ".join(kernels).encode()).hexdigest()[:12]
    name = f"{header.stem}_{digest}"
    library = BUILD / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    if not library.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        binding = BUILD / f"{name}.cpp"
        binds = "\n".join(f"    MC_BIND_UNCHECKED({kernel});" for kernel in kernels)
        binding.write_text(f'#include "host_launch.h"\n#include "{header}"\n\n'
                           f"PYBIND11_MODULE({name}, m) {{\n{binds}\n    def_launch_settings(m);\n}}\n")
        compiler = os.environ.get("CXX") or shutil.which("c++") or "g++"
        command = [compiler, *host_compile_flags(), "-shared", "-fPIC", "-I" + str(ROOT / "csrc"),
                   "-I" + str(ROOT / "src"), "-I" + pybind11.get_include(), "-I" + sysconfig.get_paths()["include"],
                   str(binding), "-o", str(library)]
        print(f"compiling {header.name} for the CPU ...", flush=True)
        if subprocess.run(command[:1] + ["-fopenmp"] + command[1:]).returncode != 0:
            print("(no OpenMP? trying without)")
            subprocess.run(command, check=True)
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- arrays, checks, timing
def to_device(array, args):
    if args.device == "cuda":
        import cupy
        return cupy.asarray(array)
    return np.ascontiguousarray(array)


def to_numpy(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def check(name, ours, reference, atol=0.0):
    """Stop the driver (SystemExit) unless ``ours`` equals ``reference`` within atol (0: bit for bit).
    atol may also be an array of per-entry bounds, the reference's shape."""
    ours, reference = to_numpy(ours), np.asarray(reference)
    if ours.shape != reference.shape:
        raise SystemExit(f"{name}: shape {ours.shape}, the reference's {reference.shape}")
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), ours.shape)
    error = np.abs(ours.astype(np.float64) - reference)
    excess = np.where(np.isnan(error), np.inf, error - atol)      # NaN: never within any bound
    if ours.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), ours.shape)
        raise SystemExit(f"{name}: MISMATCH, error {error[worst]:g} (allowed {atol[worst]:g}) at {worst}: "
                         f"{ours[worst]!r} vs the reference's {reference[worst]!r}")
    print(f"  {name:<40} ok (largest error {float(error.max()) if ours.size else 0.0:g})")


def time_ms(function, args):
    """Median milliseconds of ``function()`` after args.warmup runs: (wall clock, CPU time of this
    process). On a machine shared with other programs the wall clock waits for a core as well;
    the CPU time of a one-thread run does not (with more threads it adds them up)."""
    synchronize = _synchronizer(args)
    for _ in range(args.warmup):
        function()
    synchronize()
    wall, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def _synchronizer(args):
    if args.device == "cuda":
        import cupy
        return cupy.cuda.get_current_stream().synchronize
    return lambda: None
