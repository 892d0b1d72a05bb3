"""The csrc/ kernels compile for the GPU, without needing a GPU.

- nvcc: every kernel, for float and double, compiled to a cubin for sm_80 (A100)
  and sm_90 (H100), warnings as errors; the cubin must hold every kernel.
- NVRTC: the exact source the RawKernel loader hands CuPy (csrc/ with its
  includes pasted in), compiled by libnvrtc through ctypes with the same name
  expressions CuPy asks for.
- src/cuda_module.cu (the pybind11 module) compiles when the cuBLAS headers are found.

Each part is skipped, with the reason, where its tool is missing.
"""

import ctypes
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from minicnn.backends.cuda import CTYPES, csrc_dir, kernel_names, kernel_source

KERNELS = kernel_names()

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ["80", "90"]


def find_nvcc():
    home = os.environ.get("CUDA_HOME")
    for nvcc in ([os.path.join(home, "bin", "nvcc")] if home else []) + [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]:
        if nvcc and os.path.isfile(nvcc):
            return nvcc
    return None


NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set CUDA_HOME or put nvcc on PATH)")


def mangled(kernel, ctype):
    """The Itanium-mangled name of kernel<ctype>, as it appears in a cubin."""
    return f"{len(kernel)}{kernel}I{'f' if ctype == 'float' else 'd'}E"


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_compile_with_nvcc(arch, tmp_path):
    source = tmp_path / "all_kernels.cu"
    lines = ['#include "kernels.cuh"', "// taking each kernel's address instantiates it for the device",
             "void* minicnn_all_kernels[] = {"]
    lines += [f"    (void*)&{k}<{t}>," for k in KERNELS for t in CTYPES.values()]
    source.write_text("\n".join(lines + ["};", ""]))
    cubin = tmp_path / f"kernels_sm{arch}.cubin"
    result = subprocess.run([NVCC, "-cubin", "-std=c++17", f"-arch=sm_{arch}", "-Werror", "all-warnings",
                             "-I", str(csrc_dir()), str(source), "-o", str(cubin)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed for sm_{arch}:\n{result.stdout}\n{result.stderr}"
    binary = cubin.read_bytes()
    missing = [f"{k}<{t}>" for k in KERNELS for t in CTYPES.values() if mangled(k, t).encode() not in binary]
    assert not missing, f"kernels missing from the sm_{arch} cubin: {missing}"


# --------------------------------------------------------------------------- NVRTC, as the RawKernel loader uses it
def find_nvrtc():
    names = []
    for path in sys.path:
        names += glob.glob(os.path.join(path, "nvidia", "cu13", "lib", "libnvrtc.so*"))
        names += glob.glob(os.path.join(path, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
    for root in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"] + glob.glob("/usr/local/cuda-*"):
        if root:
            names += glob.glob(os.path.join(root, "lib64", "libnvrtc.so*"))
    names += ["libnvrtc.so"]
    for name in names:
        if "builtins" in name or "alt" in os.path.basename(name):
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


NVRTC = find_nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="libnvrtc not found (a CUDA toolkit or the nvidia-cuda-nvrtc wheel)")
@pytest.mark.parametrize("arch", ARCHS)
def test_rawkernel_source_compiles_with_nvrtc(arch):
    nvrtc = NVRTC
    program = ctypes.c_void_p()
    source = kernel_source().encode()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"minicnn_kernels.cu", 0, None, None) == 0
    expressions = [f"{k}<{t}>".encode() for k in KERNELS for t in CTYPES.values()]
    for expression in expressions:
        assert nvrtc.nvrtcAddNameExpression(program, expression) == 0
    # RawKernelLoader passes no options of its own; CuPy adds the architecture of the GPU
    options = [f"--gpu-architecture=sm_{arch}".encode()]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    log_size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(log_size))
    log = ctypes.create_string_buffer(log_size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    assert status == 0, f"NVRTC failed for sm_{arch}:\n{log.value.decode(errors='replace')}"
    for expression in expressions:       # every kernel the loader asks for has a lowered (mangled) name
        lowered = ctypes.c_char_p()
        assert nvrtc.nvrtcGetLoweredName(program, expression, ctypes.byref(lowered)) == 0, expression
        assert lowered.value.startswith(b"_Z")
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


# --------------------------------------------------------------------------- the pybind11 CUDA module
def find_cublas_include():
    roots = [os.environ.get("MINICNN_CUBLAS_DIR", ""), os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    roots += glob.glob("/usr/local/cuda-*")
    for path in sys.path:
        roots += [os.path.join(path, "nvidia", "cu13"), os.path.join(path, "nvidia", "cublas")]
    for root in roots:
        if root and os.path.isfile(os.path.join(root, "include", "cublas_v2.h")):
            return os.path.join(root, "include")
    return None


@needs_nvcc
@pytest.mark.skipif(find_cublas_include() is None, reason="cuBLAS headers not found (CUDA toolkit or nvidia-cublas wheel)")
def test_cuda_module_compiles(tmp_path):
    pybind11 = pytest.importorskip("pybind11")
    result = subprocess.run([NVCC, "-c", "-std=c++17", "-Xcompiler", "-fPIC", "-gencode", "arch=compute_90,code=sm_90",
                             "-I", str(csrc_dir()), "-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"],
                             "-I", find_cublas_include(), str(ROOT / "src" / "cuda_module.cu"),
                             "-o", str(tmp_path / "cuda_module.o")], capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on src/cuda_module.cu:\n{result.stdout}\n{result.stderr}"


def test_cuda_module_errors_name_the_kernel():
    """Without a GPU, a launch through a built minicnn._cuda fails as a RuntimeError naming the kernel."""
    try:
        from minicnn import _cuda
    except ImportError:
        pytest.skip("minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .)")
    from minicnn.device import cuda_available
    if cuda_available():
        pytest.skip("a GPU is present: the tests marked gpu cover the module")
    with pytest.raises(RuntimeError, match="kernel 'relu_forward' failed"):
        _cuda.relu_forward_float32(1, 0, 0, 0.0, 0)
