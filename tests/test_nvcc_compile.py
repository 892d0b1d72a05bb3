"""The csrc/ kernels compile for the GPU, without needing a GPU.

- nvcc: every kernel, for float and double, compiled to a cubin for sm_80 (A100)
  and sm_90 (H100) with setup.py's flags (MC_CUDA_MATH_FLAGS), warnings as errors;
  the cubin must hold every kernel.
- NVRTC: the exact source the RawKernel loader hands CuPy (csrc/ with its
  includes pasted in), compiled by libnvrtc through ctypes with the options CuPy
  really passes (the loader's, then CuPy's own) and the name expressions it asks for.
- The floating-point promise of docs/kernels.md, read off the PTX both compilers
  emit: no fused multiply-add in any kernel that calls no exp/log/pow (so those
  kernels round exactly as the host build), and float32 arithmetic flushing
  denormals (.ftz) in both builds alike.
- src/cuda_module.cu (the pybind11 module) compiles when the cuBLAS headers are found.
- dev/'s numbered variants (dev/*_variants.cuh) compile with nvcc and, as the drivers'
  --device cuda hands them to CuPy, with NVRTC; the scattering col2im adds atomically
  and the gathering ones do not.

Each part is skipped, with the reason, where its tool is missing.
"""

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from minicnn.backends.cuda import CTYPES, kernel_source
from minicnn.backends.sources import csrc_dir, cuda_math_flags, kernel_names, nvrtc_options

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
    result = subprocess.run([NVCC, "-cubin", "-std=c++17", *cuda_math_flags(), f"-arch=sm_{arch}",
                             "-Werror", "all-warnings", "-I", str(csrc_dir()), str(source), "-o", str(cubin)],
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


# What CuPy adds to a RawModule's options, in its order, after the loader's own
# (nvrtc_options()): cupy/_core/_compile_with_cache.pyx assemble_cupy_compiler_options
# adds --std=c++17 only when no -std is given (the loader gives one) and include paths
# (-I for CCCL, CuPy's and CUDA's headers: the device side of our source includes
# nothing, and compiles here without them);
# cupy/cuda/compiler.py _compile_with_cache_cuda appends -ftz=true, and compile_using_nvrtc
# --device-as-default-execution-space (NVRTC >= 12) and -arch=sm_XX (a cubin).
# NVRTC honours the last of repeated options, so CuPy's -ftz=true wins over any of ours.
CUPY_APPENDS = ("-ftz=true", "--device-as-default-execution-space")


def cupy_options(target):
    """The options cupy.RawModule hands NVRTC for our source, for -arch=<target>."""
    return nvrtc_options() + CUPY_APPENDS + (f"-arch={target}",)


def nvrtc_compile(options, expressions, source=None):
    """Compile the RawKernel source (or ``source``) with libnvrtc: (status, log, PTX or None,
    {expression: lowered name})."""
    nvrtc = NVRTC
    program = ctypes.c_void_p()
    source = kernel_source() if source is None else source
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"minicnn_kernels.cu",
                                    0, None, None) == 0
    try:
        for expression in expressions:
            assert nvrtc.nvrtcAddNameExpression(program, expression.encode()) == 0
        encoded = [o.encode() for o in options]
        status = nvrtc.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        log_size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(log_size))
        log = ctypes.create_string_buffer(log_size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        if status != 0:
            return status, log.value.decode(errors="replace"), None, {}
        lowered = {}
        for expression in expressions:
            name = ctypes.c_char_p()
            if nvrtc.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)) == 0:
                lowered[expression] = name.value.decode()
        ptx = None
        ptx_size = ctypes.c_size_t()
        if nvrtc.nvrtcGetPTXSize(program, ctypes.byref(ptx_size)) == 0:
            buffer = ctypes.create_string_buffer(ptx_size.value)
            nvrtc.nvrtcGetPTX(program, buffer)
            ptx = buffer.value.decode()
        return status, log.value.decode(errors="replace"), ptx, lowered
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


EXPRESSIONS = [f"{k}<{t}>" for k in KERNELS for t in CTYPES.values()]
needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason="libnvrtc not found (a CUDA toolkit or the nvidia-cuda-nvrtc wheel)")


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
def test_rawkernel_source_compiles_with_cupys_nvrtc_options(arch):
    status, log, _, lowered = nvrtc_compile(cupy_options(f"sm_{arch}"), EXPRESSIONS)
    assert status == 0, f"NVRTC failed for sm_{arch} with {cupy_options(f'sm_{arch}')}:\n{log}"
    # every kernel the loader asks for has a lowered (mangled) name
    assert sorted(lowered) == sorted(EXPRESSIONS)
    assert all(name.startswith("_Z") for name in lowered.values())


# --------------------------------------------------------------------------- the floating-point promise, in the PTX
def transcendental_kernels():
    """The kernels whose source calls mc_exp, mc_log or mc_pow (or mc_lrn_power, which calls
    mc_pow for any beta but 3/4): CUDA's math library computes those with FMAs of its own and
    to within a few ulps, so they are held to a tolerance."""
    names, count = set(), 0
    for path in sorted(csrc_dir().glob("*.cuh")):
        text = path.read_text()
        starts = list(re.finditer(r"\bMC_KERNEL\s+(\w+)\s*\(", text))
        count += len(starts)
        for start, end in zip(starts, starts[1:] + [None]):
            body = text[start.start():end.start() if end else len(text)].split("\ntemplate <")[0]
            if re.search(r"\bmc_(exp|log|pow|lrn_power)\(", body):
                names.add(start.group(1))
    assert count == len(KERNELS), "every kernel of MC_FOR_EACH_KERNEL is an MC_KERNEL in csrc/"
    return names


def ptx_entries(ptx, lowered):
    """{expression: the PTX text of that kernel's entry, from its name to its closing brace}."""
    entries = {}
    for expression, name in lowered.items():
        found = [m.start() for m in re.finditer(rf"\.entry\s+{re.escape(name)}\s*\(", ptx)]
        assert len(found) == 1, f"no single PTX entry for {expression} ({name})"
        entries[expression] = ptx[found[0]:ptx.index("\n}", found[0])]
    return entries


def check_floating_point_promise(entries):
    exact = [e for e in entries if e.split("<")[0] not in transcendental_kernels()]
    for expression in exact:
        fused = re.findall(r"^\s*fma\.\S+", entries[expression], flags=re.M)
        assert not fused, f"{expression}: a fused multiply-add ({fused[0]}) where docs/kernels.md promises none"
        # a mul or add without .rn may still be fused by ptxas; with .rn it never is (PTX ISA, "mul", "add")
        loose = re.findall(r"^\s*(?:mul|add|sub)(?:\.ftz)?\.f(?:32|64)\s", entries[expression], flags=re.M)
        assert not loose, f"{expression}: {loose[0].strip()} has no .rn, so ptxas may fuse it"
    for expression, body in entries.items():
        arithmetic32 = re.findall(r"^\s*(?:add|sub|mul|div|sqrt|fma|max|min|setp\.\w+)\.[\w.]*f32\s", body, flags=re.M)
        unflushed = [a.strip() for a in arithmetic32 if ".ftz" not in a]
        assert not unflushed, f"{expression}: float32 arithmetic without .ftz ({unflushed[0]}): the two loaders would differ"


def test_transcendental_kernels_are_the_expected_ones():
    # the list docs/kernels.md gives; a new kernel calling exp/log/pow must be added there too
    assert transcendental_kernels() == {"lrn_forward", "lrn_backward_terms", "softmax_partials",
                                        "softmax_cross_entropy_forward", "softmax_probs"}


@needs_nvrtc
def test_nvrtc_ptx_keeps_the_floating_point_promise():
    status, log, ptx, lowered = nvrtc_compile(cupy_options("compute_90"), EXPRESSIONS)
    assert status == 0, log
    assert len(lowered) == len(EXPRESSIONS)
    check_floating_point_promise(ptx_entries(ptx, lowered))


@needs_nvrtc
def test_nvrtc_without_fmad_false_would_fuse():
    # the check above can fail: CuPy's options alone (no --fmad=false) contract sgd_update into FMAs
    options = tuple(o for o in cupy_options("compute_90") if not o.startswith("--fmad"))
    status, log, ptx, lowered = nvrtc_compile(options, ["sgd_update<float>"])
    assert status == 0, log
    with pytest.raises(AssertionError, match="fused multiply-add"):
        check_floating_point_promise(ptx_entries(ptx, lowered))


@needs_nvcc
def test_nvcc_ptx_keeps_the_floating_point_promise(tmp_path):
    # what setup.py compiles minicnn._cuda with: -std=c++17 and MC_CUDA_MATH_FLAGS
    source = tmp_path / "all_kernels.cu"
    lines = ['#include "kernels.cuh"', "void* minicnn_all_kernels[] = {"]
    lines += [f"    (void*)&{k}<{t}>," for k in KERNELS for t in CTYPES.values()]
    source.write_text("\n".join(lines + ["};", ""]))
    ptx_path = tmp_path / "kernels.ptx"
    result = subprocess.run([NVCC, "-ptx", "-O2", "-std=c++17", *cuda_math_flags(), "-arch=sm_90",
                             "-I", str(csrc_dir()), str(source), "-o", str(ptx_path)], capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc -ptx failed:\n{result.stdout}\n{result.stderr}"
    ptx = ptx_path.read_text()
    lowered = {f"{k}<{t}>": f"_Z{mangled(k, t)}" for k in KERNELS for t in CTYPES.values()}
    lowered = {e: next(m for m in re.findall(r"\.entry\s+(\w+)", ptx) if m.startswith(name)) for e, name in lowered.items()}
    assert len(lowered) == len(EXPRESSIONS)
    check_floating_point_promise(ptx_entries(ptx, lowered))


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
    result = subprocess.run([NVCC, "-c", "-std=c++17", *cuda_math_flags(), "-Xcompiler", "-fPIC",
                             "-gencode", "arch=compute_90,code=sm_90",
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


# --------------------------------------------------------------------------- dev/'s numbered variants
VARIANT_HEADERS = sorted((ROOT / "dev").glob("*_variants.cuh"))


def variant_expressions(header):
    """The kernels a dev/ header defines itself, for float and double (those it includes
    from csrc/ are compiled above)."""
    names = re.findall(r"\bMC_KERNEL\s+(\w+)\s*\(", header.read_text())
    assert names, f"{header.name} defines no kernel"
    return [f"{k}<{t}>" for k in names for t in CTYPES.values()]


@needs_nvcc
@pytest.mark.parametrize("header", VARIANT_HEADERS, ids=lambda p: p.name)
def test_dev_variants_compile_with_nvcc(header, tmp_path):
    source = tmp_path / "variants.cu"
    lines = [f'#include "{header}"', "void* variants[] = {"]
    lines += [f"    (void*)&{e}," for e in variant_expressions(header)]
    source.write_text("\n".join(lines + ["};", ""]))
    result = subprocess.run([NVCC, "-cubin", "-std=c++17", *cuda_math_flags(), "-arch=sm_80", "-Werror", "all-warnings",
                             "-I", str(csrc_dir()), str(source), "-o", str(tmp_path / "variants.cubin")],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {header.name}:\n{result.stdout}\n{result.stderr}"


@needs_nvrtc
@pytest.mark.parametrize("header", VARIANT_HEADERS, ids=lambda p: p.name)
def test_dev_variants_compile_as_their_drivers_hand_them_to_cupy(header):
    # the source RawKernelLoader(header=...) builds, with the options CuPy passes
    expressions = variant_expressions(header)
    status, log, ptx, lowered = nvrtc_compile(cupy_options("sm_80"), expressions, kernel_source(header))
    assert status == 0, f"NVRTC failed on {header.name}:\n{log}"
    assert sorted(lowered) == sorted(expressions)


@needs_nvrtc
def test_the_scattering_col2im_adds_atomically_and_the_gathering_ones_do_not():
    expressions = [f"{k}<{t}>" for k in ("col2im", "col2im_1", "col2im_3") for t in CTYPES.values()]
    status, log, ptx, lowered = nvrtc_compile(cupy_options("compute_80"), expressions,
                                              kernel_source(ROOT / "dev" / "im2col_variants.cuh"))
    assert status == 0, log
    for expression, body in ptx_entries(ptx, lowered).items():
        atomic = re.findall(r"^\s*(?:atom|red)\.global\.add\.f(?:32|64)", body, flags=re.M)
        assert bool(atomic) == expression.startswith("col2im_3<"), f"{expression}: atomic adds {atomic}"
