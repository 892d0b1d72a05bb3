"""The facts about the kernel sources, each written once: where csrc/ is, which kernels it
holds, and the flags every build compiles it with.

Three builds read them: the RawKernel loader (backends/cuda.py: NVRTC, at first use),
setup.py (minicnn._host with the host's C++ compiler, minicnn._cuda with nvcc) and
dev/common.py (the numbered kernel variants). setup.py loads this file by its path,
before minicnn is built and while only its build requirements are installed, so it
imports nothing but the standard library.
"""

import re
from pathlib import Path

CXX_STANDARD = "c++17"      # of every build: the host compiler, nvcc and NVRTC


def csrc_dir():
    """Where the kernel sources are: shipped inside the package by setup.py
    (minicnn/csrc, for a regular install), or the repository's csrc/ (editable install)."""
    here = Path(__file__).resolve().parent.parent          # .../minicnn
    for candidate in (here / "csrc", here.parent / "csrc"):
        if (candidate / "kernels.cuh").is_file():
            return candidate
    raise RuntimeError(f"cannot find the CUDA kernel sources (kernels.cuh) in {here / 'csrc'} "
                       f"or {here.parent / 'csrc'}; reinstall minicnn")


def kernel_names(csrc=None):
    """Every kernel of csrc/, as listed once in the MC_FOR_EACH_KERNEL macro of kernels.cuh."""
    text = (Path(csrc or csrc_dir()) / "kernels.cuh").read_text()
    macro = text[text.index("#define MC_FOR_EACH_KERNEL"):]
    macro = macro[:macro.index("\n\n")] if "\n\n" in macro else macro
    return tuple(re.findall(r"X\((\w+)\)", macro))


def csrc_define(name, csrc=None):
    """The integer value of ``#define name value`` in csrc/common.cuh (the launch shape)."""
    match = re.search(rf"^#define\s+{name}\s+(\d+)", (Path(csrc or csrc_dir()) / "common.cuh").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"csrc/common.cuh defines no {name}")
    return int(match.group(1))


def cuda_math_flags(csrc=None):
    """The floating-point flags both GPU builds compile with (MC_CUDA_MATH_FLAGS in csrc/common.cuh):
    nvcc's for minicnn._cuda and NVRTC's for the RawKernel loader."""
    text = (Path(csrc or csrc_dir()) / "common.cuh").read_text()
    match = re.search(r'^#define\s+MC_CUDA_MATH_FLAGS\s+"([^"]*)"', text, re.M)
    if match is None:
        raise RuntimeError("csrc/common.cuh defines no MC_CUDA_MATH_FLAGS")
    return tuple(match.group(1).split())


def nvrtc_options(csrc=None):
    """What the RawKernel loader passes to cupy.RawModule: the C++ standard nvcc also uses, and
    the math flags. CuPy appends its own (-ftz=true, --device-as-default-execution-space, -arch=sm_XX,
    include paths); tests/test_nvcc_compile.py compiles with the whole list."""
    return ("--std=" + CXX_STANDARD,) + cuda_math_flags(csrc)


def host_compile_flags(debug=False):
    """The host compiler's flags for minicnn._host and dev/'s variants. In setup.py they come after
    Python's own CFLAGS and the user's (which hold -O3 or -O2 and often -g), so they are the ones
    that count.

    No contraction of a * b + c into an FMA (g++ contracts by default where the target has FMA,
    e.g. -march=native or aarch64): the kernels round as NumPy and the GPU builds do. Neither
    -fno-* flag changes a result either (no -ffast-math: sums keep their order).
    -fno-trapping-math lets the compiler evaluate both sides of a ?: (x > 0 ? x : x * slope
    becomes a vector blend instead of an unpredictable branch); -fno-math-errno drops errno
    bookkeeping around sqrt.

    debug: -O0 -g in place of -O3, so that gdb steps line by line and sees every local (at -O3
    the kernels' loops are vectorised and their variables "optimized out"); the floating-point
    flags stay, so a debug build computes the same bits. MC_DEBUG_BUILD sets
    minicnn._host.debug_build."""
    numerics = ["-std=" + CXX_STANDARD, "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno"]
    return (["-O0", "-g", "-DMC_DEBUG_BUILD"] if debug else ["-O3"]) + numerics
