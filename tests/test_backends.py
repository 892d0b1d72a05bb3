"""The backends as a whole: which one runs an op, the kernel list, a small network's step on
each kernel backend against the reference, the loaders' plumbing, and the argument hygiene
that keeps a bad array from ever reaching a kernel.

The op-by-op cases live in the family modules (test_conv.py, test_pool.py, test_norm.py,
test_activation.py, test_loss.py, test_linear.py, test_tensor_ops.py, test_optim.py).
"""

import types

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import backends

from fixtures import DTYPES, GPU_TOL, TOL, CublasModel, FakeRawModule, backend_selected, host_module, on_reference, \
    randn, scaled

R = backends.reference_backend()


# --------------------------------------------------------------------------- the kernel list, the switches
def test_every_kernel_is_known_to_the_cuda_loaders():
    """sources.kernel_names() (what NVRTC instantiates) lists exactly the kernels minicnn._host binds."""
    from minicnn.backends.sources import kernel_names
    bound = {name.rsplit("_", 1)[0] for name in dir(host_module()) if name.endswith("_float32")}
    assert bound == set(kernel_names())


def test_set_cpu_backend_selects_host_backend():
    host_module()
    previous = mc.get_cpu_backend()
    mc.set_cpu_backend("kernels")
    try:
        assert backends.for_array(np.zeros(1)) is backends.host_backend()
    finally:
        mc.set_cpu_backend("reference")
    assert backends.for_array(np.zeros(1)) is R
    mc.set_cpu_backend(previous)


# --------------------------------------------------------------------------- a small network, through minicnn.functional
def _small_net_step(backend, dtype):
    """Forward and backward of a small AlexNet-like stack on ``backend``; the loss and every gradient."""
    rng = np.random.default_rng(3)
    arrays = [randn(rng, (4, 3, 15, 15), dtype), randn(rng, (8, 3, 5, 5), dtype) * 0.2, randn(rng, (8,), dtype),
              randn(rng, (6, 4, 3, 3), dtype) * 0.2, randn(rng, (5, 6 * 2 * 2), dtype) * 0.2, randn(rng, (5,), dtype)]
    x, w1, b1, w2, wf, bf = [backend.tensor(a, True) for a in arrays]
    h = F.relu(F.conv2d(x, w1, b1, stride=2, padding=1))                    # (4, 8, 7, 7)
    h = F.local_response_norm(h, size=5, alpha=0.5, beta=0.75, k=1.0)
    h = F.max_pool2d(h, 3, stride=2)                                        # (4, 8, 3, 3)
    h = F.leaky_relu(F.conv2d(h, w2, None, padding=1, groups=2), 0.1)      # (4, 6, 3, 3)
    h = F.avg_pool2d(h, 2, stride=1)                                        # (4, 6, 2, 2)
    h = F.dropout(F.flatten(h), p=0.3, seed=1234)
    loss = F.cross_entropy(F.linear(h, wf, bf), np.array([0, 4, 2, 1]))
    loss.backward()
    return [loss.numpy()] + [backend.numpy(t.grad).copy() for t in (x, w1, b1, w2, wf, bf)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_network_step_matches_reference(kernel_backend, dtype):
    ours = _small_net_step(kernel_backend, dtype)
    ref = on_reference(_small_net_step, dtype)
    tol = GPU_TOL[dtype] if kernel_backend.device == "cuda" else scaled(TOL[dtype], 50)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, **tol)


def _normalization_and_losses_step(backend, dtype):
    """BatchNorm in training and in eval, nll_loss (cross_entropy with class weights) and mse_loss,
    forward and backward: the kernels the small network does not use."""
    rng = np.random.default_rng(4)
    x = backend.tensor(randn(rng, (4, 3, 5, 5), dtype), True)
    layer = mc.nn.BatchNorm2d(3).to(dtype).to(backend.device)
    h = layer(x)
    h = layer.eval()(h)
    logits = h.mean(axis=(2, 3))
    loss = F.cross_entropy(logits, np.array([0, 2, 1, 1]), weight=np.array([1.0, 2.0, 0.5]))
    loss = loss + F.mse_loss(logits, np.zeros((4, 3), dtype))
    loss.backward()


def test_the_fake_rawkernel_backend_launches_every_kernel(monkeypatch):
    """The small network, a BatchNorm and loss step and the optimizers use every kernel of csrc/,
    so the cases above run each kernel's launch (argument types included) through the RawKernel
    loader's Python side."""
    from minicnn.backends.sources import kernel_names
    FakeRawModule.launched.clear()
    with backend_selected("fake-rawkernel", monkeypatch) as fake:
        _small_net_step(fake, np.float32)
        _normalization_and_losses_step(fake, np.float32)
        p = mc.Parameter(fake.array(np.ones(3, np.float32)))
        for optimizer in (mc.optim.SGD([p], lr=0.1, momentum=0.9), mc.optim.Adam([p]), mc.optim.AdamW([p]),
                          mc.optim.RMSprop([p], momentum=0.9, centered=True)):
            p.grad = fake.array(np.ones(3, np.float32))
            optimizer.step()
    assert FakeRawModule.launched == set(kernel_names())


# --------------------------------------------------------------------------- the pybind11 loader's GEMM mapping, without a GPU
@pytest.mark.parametrize("dtype", DTYPES)
def test_pybind11_loader_gemm_mapping_on_a_cublas_model(dtype):
    from minicnn.backends.cuda import Pybind11Loader

    loader = object.__new__(Pybind11Loader)          # no CuPy, no GPU: NumPy arrays and host pointers
    loader.cp = types.SimpleNamespace(ndarray=np.ndarray)
    model = CublasModel(dtype)
    loader.ext = types.SimpleNamespace(**{f"gemm_{np.dtype(dtype).name}": model.gemm})
    loader.pointer = lambda a: a.ctypes.data
    loader.stream = lambda: 0
    rng = np.random.default_rng(0)
    n, g, og, k, L = 3, 2, 4, 5, 6
    w = randn(rng, (g, og, k), dtype)
    cols = randn(rng, (n, g, k, L), dtype)
    dy = randn(rng, (n, g, og, L), dtype)
    tol = TOL[dtype]
    # the three conv GEMMs, on the same strided group views KernelBackend passes
    y = np.zeros((n, g, og, L), dtype)
    dcols = np.zeros((n, g, k, L), dtype)
    dw = np.zeros((n, g, og, k), dtype)
    for gi in range(g):
        loader.gemm(w[gi], cols[:, gi], y[:, gi], False, False)
        loader.gemm(w[gi], dy[:, gi], dcols[:, gi], True, False)
        loader.gemm(dy[:, gi], cols[:, gi], dw[:, gi], False, True)
    np.testing.assert_allclose(y, np.matmul(w[None], cols), **tol)
    np.testing.assert_allclose(dcols, np.matmul(np.swapaxes(w, 1, 2)[None], dy), **tol)
    np.testing.assert_allclose(dw, np.matmul(dy, np.swapaxes(cols, 2, 3)), **tol)
    # the linear GEMMs, unbatched
    x, wl, d = randn(rng, (7, 9), dtype), randn(rng, (4, 9), dtype), randn(rng, (7, 4), dtype)
    for a, b, ta, tb, expected in ((x, wl, False, True, x @ wl.T), (d, wl, False, False, d @ wl),
                                   (d, x, True, False, d.T @ x)):
        out = np.zeros(expected.shape, dtype)
        loader.gemm(a, b, out, ta, tb)
        np.testing.assert_allclose(out, expected, **tol)


# --------------------------------------------------------------------------- no bad array reaches a kernel
def test_bad_arrays_never_reach_a_kernel(kernel_backend):
    be = kernel_backend
    with pytest.raises(TypeError, match="relu: argument 'x' must be float32 or float64"):
        be.impl.relu_forward(be.array(np.arange(4)), 0.0)
    with pytest.raises(TypeError, match="must be float32 or float64"):
        be.impl.relu_forward(be.array(np.zeros(4, np.int32)), 0.0)
    with pytest.raises(TypeError, match="conv2d: argument 'weight' is float64"):
        be.impl.conv2d_forward(be.array(np.zeros((1, 1, 3, 3), np.float32)), be.array(np.zeros((1, 1, 3, 3))), None,
                               (1, 1), (0, 0, 0, 0), 1, (1, 1))
    # a strided view is copied: kernels index flat memory
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    be.assert_equal(be.impl.relu_forward(be.array(x)[:, ::2], 0.0), x[:, ::2])
    x = randn(np.random.default_rng(1), (2, 3, 8, 8), np.float32)
    y, _ = be.impl.max_pool2d_forward(be.array(x)[:, :, ::2, ::2], (2, 2), (2, 2), (0, 0))
    be.assert_equal(y, R.max_pool2d_forward(np.ascontiguousarray(x[:, :, ::2, ::2]), (2, 2), (2, 2), (0, 0))[0])


def test_cpu_arrays_never_reach_a_cuda_kernel(gpu_backend):
    with pytest.raises(TypeError, match="relu: argument 'x' is a cpu array"):
        gpu_backend.impl.relu_forward(np.zeros(4, np.float32), 0.0)


def test_mixing_devices_is_a_clear_error(gpu_backend):
    x = mc.Tensor(np.zeros((1, 1, 4, 4), np.float32)).to("cuda")
    w = mc.Tensor(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises((TypeError, ValueError, RuntimeError), match="(?i)device|cuda|cpu"):
        F.conv2d(x, w)


def test_the_host_extension_checks_its_arguments_below_python():
    host = host_module()
    with pytest.raises(TypeError, match="expected a float32 array"):
        host.relu_forward_float32(4, np.zeros(4), np.zeros(4, np.float32), 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        host.relu_forward_float32(4, np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), 0.0)
    readonly = np.zeros(4, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        host.relu_forward_float32(4, np.zeros(4, np.float32), readonly, 0.0)
