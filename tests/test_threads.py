"""The host build's grid on OpenMP threads (src/host_launch.h, csrc/common.cuh's MC_GRID_LOOP).

- the split: each thread walks one contiguous chunk of the indices, the chunks are
  disjoint, cover every index and differ in length by at most one; a launch gets one
  thread per MC_HOST_GRAIN indices (csrc/common.cuh), up to the thread count;
- the setting: MINICNN_NUM_THREADS, mc.set_num_threads / get_num_threads, and the
  kernels backend as the CPU default where minicnn._host is built;
- every kernel, run through the backend's ops on 2, 3 and 5 threads, gives the same
  bits as on one thread, and the NumPy reference's numbers within the tolerances of
  tests/test_host_kernels.py; a recording loader makes sure no kernel is left out;
- the host module still builds and runs, on one thread, with no OpenMP at all.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_host = pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")

import minicnn as mc  # noqa: E402
from minicnn import backends, random as mc_random  # noqa: E402
from minicnn.backends.sources import kernel_names  # noqa: E402
from minicnn.backends.host import available_cores  # noqa: E402
from minicnn.shapes import output_size  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
R = backends.reference_backend()
HOST = backends.host_backend()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
needs_openmp = pytest.mark.skipif(not _host.openmp, reason="minicnn._host was built without OpenMP (one thread)")


class threads:
    """with threads(n): kernel launches run on up to n threads inside the block; with
    threads(n, grain=1) even a launch of n indices gets all n (the tests' shapes are small)."""

    def __init__(self, count, grain=None):
        self.count, self.grain = count, grain

    def __enter__(self):
        self.before = mc.get_num_threads(), _host.grain()
        mc.set_num_threads(self.count)
        _host.set_grain(self.grain or self.before[1])

    def __exit__(self, *exc):
        mc.set_num_threads(self.before[0])
        _host.set_grain(self.before[1])


# --------------------------------------------------------------------------- the split
GRAIN = _host.grain()        # a launch gets one thread per GRAIN indices, up to the thread count


@needs_openmp
@given(count=st.integers(0, 5 * GRAIN), count_threads=st.integers(1, 7))
@SETTINGS
def test_each_thread_walks_one_contiguous_chunk(count, count_threads):
    owner = np.full(count, -1, dtype=np.int64)
    with threads(count_threads):
        _host.grid_owner(count, owner)
    used = max(1, min(count_threads, -(-count // GRAIN)))              # ceil(count / GRAIN), within 1..threads
    assert (owner >= 0).all() and (owner < used).all()                 # every index, by a thread of the launch
    assert (np.diff(owner) >= 0).all()                                 # thread t's chunk before thread t+1's
    sizes = np.bincount(owner, minlength=used)
    assert sizes.tolist() == [count // used + (t < count % used) for t in range(used)]


def test_the_grain_is_checked():
    with pytest.raises(ValueError, match="the grain must be >= 1, got 0"):
        _host.set_grain(0)


@needs_openmp
def test_the_thread_count_changes_who_computes_what():
    count = 2 * GRAIN
    owner = np.empty(count, dtype=np.int64)
    with threads(2):
        _host.grid_owner(count, owner)
    assert owner.tolist() == [0] * GRAIN + [1] * GRAIN                 # two threads, disjoint halves
    with threads(1):
        _host.grid_owner(count, owner)
    assert owner.tolist() == [0] * count                               # one thread walks them all, in order
    with threads(2):
        _host.grid_owner(GRAIN, owner[:GRAIN])
    assert set(owner[:GRAIN].tolist()) == {0}                          # too little work to share


# --------------------------------------------------------------------------- the setting
def test_set_num_threads_checks_its_argument():
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads: threads must be a positive int"):
            mc.set_num_threads(bad)
    with threads(3):
        assert mc.get_num_threads() == (3 if _host.openmp else 1)


def _python(code, **environment):
    env = {k: v for k, v in os.environ.items() if k not in ("MINICNN_NUM_THREADS", "MINICNN_CPU_BACKEND")}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


@needs_openmp
def test_minicnn_num_threads_from_the_environment():
    code = "import minicnn; print(minicnn.get_num_threads())"
    assert _python(code, MINICNN_NUM_THREADS="3").stdout.strip() == "3"
    assert _python(code).stdout.strip() == str(available_cores())     # default: the cores we may use
    bad = _python(code, MINICNN_NUM_THREADS="two")
    assert bad.returncode != 0 and "MINICNN_NUM_THREADS must be a positive int, got 'two'" in bad.stderr


def test_kernels_are_the_cpu_default_where_the_host_module_is_built():
    code = "import minicnn; print(minicnn.get_cpu_backend())"
    assert _python(code).stdout.strip() == "kernels"
    assert _python(code, MINICNN_CPU_BACKEND="reference").stdout.strip() == "reference"
    # without minicnn._host the reference is the default: hide the module and ask again
    hidden = _python("import sys; sys.modules['minicnn._host'] = None\n" + code)
    assert hidden.stdout.strip() == "reference", hidden.stderr
    # ... and says so once, with the command that builds it (here: a source tree on sys.path)
    assert hidden.stderr.count("RuntimeWarning: minicnn runs CPU ops on the NumPy reference") == 1
    assert "pip install -e" in hidden.stderr
    chosen = _python("import sys; sys.modules['minicnn._host'] = None\n" + code, MINICNN_CPU_BACKEND="reference")
    assert chosen.stdout.strip() == "reference" and "Warning" not in chosen.stderr


# --------------------------------------------------------------------------- every kernel, threaded = one thread
class RecordingLoader:
    """The host loader, noting which kernels ran."""

    def __init__(self, inner):
        self.inner, self.name, self.xp = inner, inner.name, inner.xp
        self.ran = set()

    def run(self, kernel, count, *args):
        self.ran.add(kernel)
        self.inner.run(kernel, count, *args)

    def gemm(self, *args):
        self.inner.gemm(*args)


@st.composite
def network_case(draw):
    """Shapes for one pass through every op: a dilated, asymmetrically padded grouped conv,
    pooling, LRN, ReLU, dropout, a linear layer, the loss and both optimizers."""
    groups = draw(st.integers(1, 2))
    n, c, o = draw(st.integers(1, 3)), groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - padding[0] - padding[1]), 12))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - padding[2] - padding[3]), 12))
    return dict(n=n, c=c, o=o, groups=groups, kernel=(kh, kw), stride=stride, padding=padding,
                dilation=(dh, dw), hw=(h, w), dtype=draw(st.sampled_from([np.float32, np.float64])),
                size=draw(st.sampled_from([1, 3, 5])), seed=draw(st.integers(0, 2**31 - 1)))


def every_op(backend, case):
    """Forward and backward of every op of the interface on ``backend``; {name: array}."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    randn = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    n, c, o, g = case["n"], case["c"], case["o"], case["groups"]
    h, w = case["hw"]
    conv = (case["stride"], case["padding"], g, case["dilation"])
    x, wt, b = randn(n, c, h, w), randn(o, c // g, *case["kernel"]), randn(o)
    out = {"conv": backend.conv2d_forward(x, wt, b, *conv)}
    out["conv dx"], out["conv dw"], out["conv db"] = backend.conv2d_backward(x, wt, randn(*out["conv"].shape), *conv)
    pool = ((2, 2), (1, 2), (1, 0)) if h + 2 >= 2 and w >= 2 else ((1, 1), (1, 1), (0, 0))
    xp = rng.permutation(np.linspace(-1, 1, x.size, dtype=dtype)).reshape(x.shape)    # tie-free
    out["max"], out["argmax"] = backend.max_pool2d_forward(xp, *pool)
    dyp = randn(*out["max"].shape)
    out["max dx"] = backend.max_pool2d_backward(dyp, out["argmax"], x.shape, *pool)
    out["avg"] = backend.avg_pool2d_forward(x, *pool)
    out["avg dx"] = backend.avg_pool2d_backward(dyp, x.shape, *pool)
    out["lrn"], scale = backend.lrn_forward(x, case["size"], 0.5, 0.75, 1.0)
    out["lrn dx"] = backend.lrn_backward(x, out["lrn"], scale, randn(*x.shape), case["size"], 0.5, 0.75, 1.0)
    out["relu"] = backend.relu_forward(x, 0.1)
    out["relu dx"] = backend.relu_backward(x, randn(*x.shape), 0.1)
    threshold, dropout_scale = mc_random.dropout_threshold_and_scale(0.3, np.dtype(dtype))
    out["dropout"] = backend.dropout_forward(x, threshold, dropout_scale, 77, 5)
    out["dropout dx"] = backend.dropout_backward(x, threshold, dropout_scale, 77, 5)
    features = x.reshape(n, -1)
    wl, bl = randn(5, features.shape[1]), randn(5)
    out["linear"] = backend.linear_forward(features, wl, bl)
    out["linear dx"], out["linear dw"], out["linear db"] = backend.linear_backward(features, wl, randn(n, 5))
    labels = rng.integers(0, 5, n)
    out["loss"], probs = backend.softmax_cross_entropy_forward(out["linear"], labels)
    out["dlogits"] = backend.softmax_cross_entropy_backward(probs, labels, 0.5)
    log_probs, class_weight = randn(n, 5, 2), rng.random(5).astype(dtype)
    pixel_labels = rng.integers(0, 5, (n, 2))
    pixel_labels[0, 0] = -100                                                      # one ignored
    out["nll"], out["nll counted"] = backend.nll_loss_forward(log_probs, pixel_labels, class_weight, -100)
    out["nll dx"] = backend.nll_loss_backward(pixel_labels, class_weight, -100, randn(n, 2), 5)
    out["squared"] = backend.squared_error_forward(x, x[::-1].copy())
    out["squared dx"] = backend.squared_error_backward(x, x[::-1].copy(), randn(*x.shape))
    # batch normalization over (N, C, H*W); a batch of one image has H*W values per channel
    flat = x.reshape(n, c, -1)
    gamma, beta = randn(c), randn(c)
    out["bn mean"], out["bn var"] = backend.batch_norm_statistics(flat)
    out["bn"] = backend.batch_norm_forward(flat, out["bn mean"], out["bn var"], gamma, beta, 1e-5)
    out["bn dx"], out["bn dweight"], out["bn dbias"] = backend.batch_norm_backward(
        flat, randn(*flat.shape), out["bn mean"], out["bn var"], gamma, 1e-5, True)
    out["avg without padding"] = backend.avg_pool2d_forward(x, *pool, count_include_pad=False)
    param, grad, velocity = randn(4, 7), randn(4, 7), randn(4, 7)
    backend.sgd_update(param, grad, velocity, 0.1, 0.9, 5e-4, True)
    out["sgd param"], out["sgd velocity"] = param, velocity
    m, v = np.zeros_like(param), np.zeros_like(param)
    backend.adam_update(param, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 1)
    out["adam param"], out["adam m"], out["adam v"] = param, m, v
    m, v = np.zeros_like(param), np.zeros_like(param)
    backend.adamw_update(param, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 1)
    out["adamw param"], out["adamw m"], out["adamw v"] = param, m, v
    square_avg, grad_avg, buffer = np.zeros_like(param), np.zeros_like(param), np.zeros_like(param)
    backend.rmsprop_update(param, grad, square_avg, grad_avg, buffer, 1e-2, 0.99, 1e-8, 1e-2, 0.9, True)
    out["rmsprop param"], out["rmsprop square_avg"] = param, square_avg
    out["rmsprop grad_avg"], out["rmsprop buffer"] = grad_avg, buffer
    return out


@needs_openmp
@given(case=network_case(), count_threads=st.sampled_from([2, 3, 5]))
@SETTINGS
def test_every_kernel_threaded_equals_one_thread_bit_for_bit_and_the_reference(case, count_threads):
    recording = RecordingLoader(HOST.loader)
    HOST.loader = recording
    try:
        with threads(1):
            single = every_op(HOST, case)
        with threads(count_threads, grain=1):        # every launch of >= count_threads indices split
            threaded = every_op(HOST, case)
    finally:
        HOST.loader = recording.inner
    assert recording.ran == set(kernel_names()), "a kernel escaped this test: add it to every_op"
    reference = every_op(R, case)
    tol = TOL[case["dtype"]]
    for name in single:
        np.testing.assert_array_equal(threaded[name], single[name], err_msg=name)
        if name == "argmax":
            np.testing.assert_array_equal(threaded[name], reference[name])
        else:
            scale = 10 if name.startswith(("lrn", "conv", "linear", "bn")) else 1    # sums of many products
            np.testing.assert_allclose(threaded[name], reference[name], rtol=tol["rtol"] * scale,
                                       atol=tol["atol"] * scale, err_msg=name)


# --------------------------------------------------------------------------- a compiler without OpenMP
def test_host_module_builds_and_runs_without_openmp(tmp_path):
    """csrc/ and src/ never need omp.h: without -fopenmp the module builds, and every launch is one thread."""
    import pybind11

    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler found")
    library = tmp_path / ("_host" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([compiler, "-O0", "-std=c++17", "-shared", "-fPIC", "-I" + str(ROOT / "csrc"),
                    "-I" + str(ROOT / "src"), "-I" + pybind11.get_include(),
                    "-I" + sysconfig.get_paths()["include"], str(ROOT / "src" / "host_module.cpp"),
                    "-o", str(library)], check=True)
    code = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("_host", sys.argv[1])
host = importlib.util.module_from_spec(spec)
spec.loader.exec_module(host)
host.set_num_threads(4)
owner = np.full(6, -1, dtype=np.int64)
host.grid_owner(6, owner)
x = np.array([-1.0, 2.0], dtype=np.float32)
y = np.empty_like(x)
host.relu_forward_float32(2, x, y, 0.5)
print(host.openmp, host.num_threads(), owner.tolist(), y.tolist())
"""
    result = subprocess.run([sys.executable, "-c", code, str(library)], capture_output=True, text=True)
    assert result.stdout.split("\n")[0] == "False 1 [0, 0, 0, 0, 0, 0] [-0.5, 2.0]", result.stderr


# --------------------------------------------------------------------------- the host GEMM, in blocks on threads
@pytest.mark.parametrize("count_threads", [2, 3, 5])
@pytest.mark.parametrize("a_shape, b_shape, trans_a, trans_b", [
    ((2, 32, 144), (2, 144, 700), False, False),     # conv forward: columns split
    ((2, 144, 700), (2, 32, 700), False, True),      # conv weight gradient (transposed): rows split
    ((2, 32, 144), (2, 32, 700), True, False),       # conv data gradient
    ((16, 300), (500, 300), False, True),            # linear forward
    ((37, 64), (37, 90), True, False),               # linear weight gradient
])
def test_host_gemm_in_blocks_on_threads(monkeypatch, count_threads, a_shape, b_shape, trans_a, trans_b):
    import threading
    from minicnn.backends import host as host_module
    monkeypatch.setattr(host_module, "GEMM_GRAIN", 1)                 # split even these small products
    callers = []                                                       # the thread of each block
    matmul = host_module._matmul
    monkeypatch.setattr(host_module, "_matmul", lambda *args: (callers.append(threading.get_ident()), matmul(*args)))
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    want = np.matmul(np.swapaxes(a, -1, -2) if trans_a else a, np.swapaxes(b, -1, -2) if trans_b else b)
    out = np.full(want.shape, np.nan, dtype=np.float32)
    with threads(count_threads):
        HOST.loader.gemm(a, b, out, trans_a, trans_b)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)      # every block written, right
    blocks = min(count_threads, max(want.shape[-2:]))                 # Python threads: also without OpenMP
    assert len(callers) == blocks
    assert blocks == 1 or len(set(callers)) >= 2                       # the blocks ran on several threads


def test_host_gemm_leaves_the_blas_thread_count_as_it_found_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    out = np.empty((64, 64), np.float32)
    HOST.loader.gemm(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32), out, False, False)
    assert out[0, 0] == 64
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"] == before
