"""minicnn's build: two C++ extensions from the one kernel source in csrc/. (The project's
name, version, dependencies and extras are in pyproject.toml; the kernel sources' facts,
the compile flags among them, in minicnn/backends/sources.py.)

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
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pybind11
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
CSRC = ROOT / "csrc"


def load_kernel_sources():
    """minicnn/backends/sources.py, loaded by its path: minicnn itself cannot be imported before it is built."""
    spec = importlib.util.spec_from_file_location("minicnn_sources", ROOT / "minicnn" / "backends" / "sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sources = load_kernel_sources()


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
    missing = []            # every missing piece, so that one try says all of them
    if nvcc is None:
        missing.append("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if cublas is None:
        missing.append("cuBLAS headers/libraries not found (install a CUDA toolkit or the nvidia-cublas wheel, "
                       "or set MINICNN_CUBLAS_DIR)")
    if not missing and not forced and not capabilities:
        missing.append("no GPU visible (set MINICNN_BUILD_CUDA=1 to build it anyway)")
    if missing:
        if forced:
            raise RuntimeError(f"MINICNN_BUILD_CUDA=1 but minicnn._cuda cannot be built: {'; '.join(missing)}")
        return "; ".join(missing)
    arch = os.environ.get("MINICNN_CUDA_ARCH")
    archs = arch.replace(",", ";").split(";") if arch else (capabilities or ["80", "90"])
    return {"nvcc": nvcc, "cublas": cublas, "archs": [a.strip() for a in archs if a.strip()]}


# --------------------------------------------------------------------------- build commands
class BuildPy(build_py):
    """Also ship csrc/*.cuh as minicnn/csrc, for the RawKernel loader of a regular install."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "minicnn" / "csrc"
        target.mkdir(parents=True, exist_ok=True)
        for header in sorted(CSRC.glob("*.cuh")):
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
    """g++ builds _host as usual (with OpenMP where it can); _cuda is compiled and linked by nvcc in one command.
    The two build at the same time (build_ext's parallel option, unless given): nvcc takes the longer."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None and len(self.extensions) > 1:
            self.parallel = len(self.extensions)

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
        # --threads 0: nvcc compiles for each architecture (and the PTX) at once, on as many threads
        command = [
            plan["nvcc"], "--threads", "0", "-O2", "-std=" + sources.CXX_STANDARD, *sources.cuda_math_flags(CSRC), "-shared",
            "-Xcompiler", "-fPIC", *gencode, "-I" + str(CSRC), "-I" + pybind11.get_include(),
            "-I" + sysconfig.get_paths()["include"], "-I" + include, str(ROOT / "src" / "cuda_module.cu"),
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


host_extension = Extension(
    "minicnn._host",
    sources=["src/host_module.cpp"],
    include_dirs=["csrc", "src", pybind11.get_include()],
    language="c++",
    extra_compile_args=sources.host_compile_flags(debug_build()),
    depends=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cuh"))] + ["src/host_launch.h"],
)
extensions = [host_extension]

plan = cuda_plan()
if isinstance(plan, dict):
    say(f"minicnn._cuda will be built: nvcc {plan['nvcc']}, cuBLAS headers in {plan['cublas'][0]}, "
        f"sm_{', sm_'.join(plan['archs'])}")
    cuda_extension = Extension("minicnn._cuda", sources=[])   # sources are compiled by BuildExt with nvcc
    cuda_extension.cuda_plan = plan
    extensions.append(cuda_extension)
else:
    say(f"skipping minicnn._cuda: {plan}. The CUDA RawKernel loader still works where CuPy is installed.")

setup(ext_modules=extensions, cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
