"""The GPU backend, through both loaders (RawKernel and pybind11), against the NumPy reference.

Every test here is marked ``gpu``: collected everywhere, skipped with the reason
"no CUDA device" where CuPy sees no GPU (tests/conftest.py). The pybind11 loader
is skipped, with its reason, where minicnn._cuda was not built
(scripts/gpu_check.sh builds it with MINICNN_BUILD_CUDA=1, so there it must run).
"""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import backends
from minicnn.random import dropout_threshold_and_scale
from minicnn.device import to_device

pytestmark = pytest.mark.gpu

LOADERS = ["rawkernel", "pybind11"]
R = backends.reference_backend()
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture(params=LOADERS)
def loader(request):
    pytest.importorskip("cupy", reason="CuPy is not installed")
    if request.param == "pybind11":
        try:
            import minicnn._cuda  # noqa: F401
        except ImportError as e:
            pytest.skip(f"minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .): {e}")
    previous = mc.get_cuda_loader()
    mc.set_cuda_loader(request.param)
    yield request.param
    mc.set_cuda_loader(previous)


@pytest.fixture
def be(loader):
    """The CUDA backend object of the current loader."""
    from minicnn.backends import cuda
    return cuda.backend(loader)


def gpu(a):
    import cupy
    return cupy.asarray(a)


def cpu(a):
    return None if a is None else (a.get() if hasattr(a, "get") else np.asarray(a))


def close(ours, ref, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(cpu(ours), ref, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)


def randn(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- ops, backend level
CONV_CASES = [
    # (N, C, H, W), (O, kh, kw), stride, padding, groups
    ((2, 3, 227, 227), (96, 11, 11), (4, 4), (0, 0), 1),     # AlexNet conv1
    ((2, 96, 27, 27), (256, 5, 5), (1, 1), (2, 2), 2),       # AlexNet conv2, two towers
    ((3, 6, 9, 7), (4, 3, 2), (2, 1), (1, 1), 2),
    ((1, 1, 5, 5), (1, 5, 5), (1, 1), (0, 0), 1),
    ((4, 12, 6, 6), (9, 1, 1), (1, 1), (0, 0), 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(be, case, dtype):
    shape, (o, kh, kw), stride, padding, groups = case
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, shape, dtype), randn(rng, (o, shape[1] // groups, kh, kw), dtype) * 0.1, randn(rng, (o,), dtype)
    y_ref = R.conv2d_forward(x, w, b, stride, padding, groups)
    y = be.conv2d_forward(gpu(x), gpu(w), gpu(b), stride, padding, groups)
    close(y, y_ref, dtype, scale=10)
    dy = randn(rng, y_ref.shape, dtype)
    ours = be.conv2d_backward(gpu(x), gpu(w), gpu(dy), stride, padding, groups, True, True, True)
    refs = R.conv2d_backward(x, w, dy, stride, padding, groups)
    for a, r in zip(ours, refs):
        close(a, r, dtype, scale=100)


def test_conv2d_in_chunks(be, monkeypatch):
    from minicnn.backends import kernels as _kernels
    rng = np.random.default_rng(1)
    x, w = randn(rng, (5, 4, 8, 8)), randn(rng, (6, 2, 3, 3))
    dy = randn(rng, (5, 6, 8, 8))
    monkeypatch.setattr(_kernels, "COLS_BUDGET", 1)          # one image per im2col chunk
    close(be.conv2d_forward(gpu(x), gpu(w), None, (1, 1), (1, 1), 2), R.conv2d_forward(x, w, None, (1, 1), (1, 1), 2),
          np.float32, 10)
    for a, r in zip(be.conv2d_backward(gpu(x), gpu(w), gpu(dy), (1, 1), (1, 1), 2),
                    R.conv2d_backward(x, w, dy, (1, 1), (1, 1), 2)):
        close(a, r, np.float32, 100)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear(be, dtype):
    rng = np.random.default_rng(2)
    x, w, b = randn(rng, (16, 300), dtype), randn(rng, (70, 300), dtype), randn(rng, (70,), dtype)
    close(be.linear_forward(gpu(x), gpu(w), gpu(b)), R.linear_forward(x, w, b), dtype, 10)
    dy = randn(rng, (16, 70), dtype)
    for a, r in zip(be.linear_backward(gpu(x), gpu(w), gpu(dy), True, True, True), R.linear_backward(x, w, dy)):
        close(a, r, dtype, 10)


POOL_CASES = [((2, 96, 55, 55), (3, 3), (2, 2), (0, 0)), ((3, 4, 7, 9), (3, 2), (1, 2), (1, 1)),
              ((1, 2, 4, 4), (2, 2), (2, 2), (0, 0))]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_bitwise(be, case):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(3)
    for x in (rng.permutation(np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32)).reshape(shape),
              rng.integers(-2, 3, shape).astype(np.float32)):                        # tie-free, then ties
        y, argmax = be.max_pool2d_forward(gpu(x), kernel, stride, padding)
        y_ref, argmax_ref = R.max_pool2d_forward(x, kernel, stride, padding)
        np.testing.assert_array_equal(cpu(y), y_ref)
        np.testing.assert_array_equal(cpu(argmax), argmax_ref)
        dy = randn(rng, y_ref.shape)
        dx = be.max_pool2d_backward(gpu(dy), argmax, shape, kernel, stride, padding)
        np.testing.assert_array_equal(cpu(dx), R.max_pool2d_backward(dy, argmax_ref, shape, kernel, stride, padding))


@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool(be, case):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(4)
    x = randn(rng, shape)
    y_ref = R.avg_pool2d_forward(x, kernel, stride, padding)
    close(be.avg_pool2d_forward(gpu(x), kernel, stride, padding), y_ref, np.float32)
    dy = randn(rng, y_ref.shape)
    close(be.avg_pool2d_backward(gpu(dy), shape, kernel, stride, padding),
          R.avg_pool2d_backward(dy, shape, kernel, stride, padding), np.float32)


@pytest.mark.parametrize("constants", [(1e-4, 0.75, 2.0), (0.9, 0.75, 1.0)])
def test_lrn(be, constants):
    alpha, beta, k = constants
    rng = np.random.default_rng(5)
    x = randn(rng, (2, 96, 13, 13))
    y_ref, scale_ref = R.lrn_forward(x, 5, np.float32(alpha), np.float32(beta), np.float32(k))
    y, scale = be.lrn_forward(gpu(x), 5, alpha, beta, k)
    close(y, y_ref, np.float32)
    close(scale, scale_ref, np.float32)
    dy = randn(rng, x.shape)
    close(be.lrn_backward(gpu(x), y, scale, gpu(dy), 5, alpha, beta, k),
          R.lrn_backward(x, y_ref, scale_ref, dy, 5, np.float32(alpha), np.float32(beta), np.float32(k)),
          np.float32, 10)


def test_relu_and_dropout_bitwise(be):
    rng = np.random.default_rng(6)
    x, dy = randn(rng, (8, 4096)), randn(rng, (8, 4096))
    for slope in (0.0, 0.1):
        np.testing.assert_array_equal(cpu(be.relu_forward(gpu(x), slope)), R.relu_forward(x, slope))
        np.testing.assert_array_equal(cpu(be.relu_backward(gpu(x), gpu(dy), slope)), R.relu_backward(x, dy, slope))
    threshold, scale = dropout_threshold_and_scale(0.5, x.dtype)
    for seed in (0, 12345, 2**32 - 1):     # the same hash on the GPU: the very same mask
        np.testing.assert_array_equal(cpu(be.dropout_forward(gpu(x), threshold, scale, seed)),
                                      R.dropout_forward(x, threshold, scale, seed))
        np.testing.assert_array_equal(cpu(be.dropout_backward(gpu(dy), threshold, scale, seed)),
                                      R.dropout_backward(dy, threshold, scale, seed))


def test_softmax_cross_entropy(be):
    rng = np.random.default_rng(7)
    logits, labels = randn(rng, (32, 1000)) * 5, rng.integers(0, 1000, 32)
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    loss, probs = be.softmax_cross_entropy_forward(gpu(logits), gpu(labels))
    close(loss, loss_ref, np.float32)
    close(probs, probs_ref, np.float32)
    dloss = np.float32(0.5)
    close(be.softmax_cross_entropy_backward(probs, gpu(labels), gpu(np.array(dloss))),
          R.softmax_cross_entropy_backward(probs_ref, labels, dloss), np.float32)


def test_optimizer_updates(be):
    rng = np.random.default_rng(8)
    for momentum, nesterov in ((0.0, False), (0.9, False), (0.9, True)):
        p, g, v = randn(rng, (1000,)), randn(rng, (1000,)), randn(rng, (1000,))
        gp, gv = gpu(p), gpu(v)
        be.sgd_update(gp, gpu(g), gv, 0.01, momentum, 5e-4, nesterov)
        R.sgd_update(p, g, v, 0.01, momentum, 5e-4, nesterov)
        close(gp, p, np.float32)
        close(gv, v, np.float32)
    p, g = randn(rng, (1000,)), randn(rng, (1000,))
    m, v = np.zeros_like(p), np.zeros_like(p)
    gp, gm, gv = gpu(p), gpu(m), gpu(v)
    for step in (1, 2, 3):
        be.adam_update(gp, gpu(g), gm, gv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        R.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
    for a, r in ((gp, p), (gm, m), (gv, v)):
        close(a, r, np.float32)


def test_bad_arrays_never_reach_a_kernel(be):
    with pytest.raises(TypeError, match="relu: argument 'x' is a cpu array"):
        be.relu_forward(np.zeros(4, np.float32), 0.0)
    with pytest.raises(TypeError, match="must be float32 or float64"):
        be.relu_forward(gpu(np.zeros(4, np.int32)), 0.0)
    x = gpu(np.arange(32, dtype=np.float32).reshape(4, 8))[:, ::2]       # non-contiguous: copied
    np.testing.assert_array_equal(cpu(be.relu_forward(x, 0.0)), np.arange(32, dtype=np.float32).reshape(4, 8)[:, ::2])


# --------------------------------------------------------------------------- through minicnn.functional
def _small_net(device):
    rng = np.random.default_rng(3)
    arrays = [randn(rng, (4, 3, 15, 15)), randn(rng, (8, 3, 5, 5)) * 0.2, randn(rng, (8,)),
              randn(rng, (6, 4, 3, 3)) * 0.2, randn(rng, (5, 24)) * 0.2, randn(rng, (5,))]
    x, w1, b1, w2, wf, bf = [mc.Tensor(to_device(a, device), requires_grad=True) for a in arrays]
    h = F.relu(F.conv2d(x, w1, b1, stride=2, padding=1))
    h = F.max_pool2d(F.local_response_norm(h, size=5, alpha=0.5, beta=0.75, k=1.0), 3, stride=2)
    h = F.avg_pool2d(F.leaky_relu(F.conv2d(h, w2, None, padding=1, groups=2), 0.1), 2, stride=1)
    h = F.dropout(F.flatten(h), p=0.3, seed=99)
    loss = F.cross_entropy(F.linear(h, wf, bf), np.array([0, 4, 2, 1]))
    loss.backward()
    return [loss.numpy()] + [cpu(t.grad) for t in (x, w1, b1, w2, wf, bf)]


def test_functional_ops_on_cuda_match_cpu(loader):
    for ours, ref in zip(_small_net("cuda"), _small_net("cpu")):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_mixing_devices_is_a_clear_error(loader):
    x = mc.Tensor(np.zeros((1, 1, 4, 4), np.float32)).to("cuda")
    w = mc.Tensor(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises((TypeError, ValueError, RuntimeError), match="(?i)device|cuda|cpu"):
        F.conv2d(x, w)


def test_alexnet_training_step_cuda_equals_cpu(loader):
    """One SGD step of the paper's AlexNet (same weights, same dropout seeds) on both devices."""
    def step(device):
        mc.manual_seed(0)
        model = mc.models.alexnet(num_classes=1000)
        before = model.state_dict()
        model.train()
        model.to(device)
        rng = np.random.default_rng(0)
        images = mc.Tensor(rng.standard_normal((4, 3, 227, 227)).astype(np.float32)).to(device)
        labels = np.array([1, 10, 100, 999])
        optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        mc.manual_seed(1)                   # the dropout seeds: the same masks on both devices
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        grads = {name: cpu(p.grad) for name, p in model.named_parameters()}
        optimizer.step()
        after = model.state_dict()
        return float(loss.numpy()), grads, {name: after[name] - before[name] for name in after}

    loss_gpu, grads_gpu, update_gpu = step("cuda")
    loss_cpu, grads_cpu, update_cpu = step("cpu")
    assert abs(loss_gpu - loss_cpu) <= 1e-4 * max(1.0, abs(loss_cpu))
    for name in grads_cpu:
        # float32 sums in another order: compare on the scale of each tensor's largest entry
        for what, ours, ref in (("gradient", grads_gpu, grads_cpu), ("SGD update", update_gpu, update_cpu)):
            scale = np.abs(ref[name]).max() + 1e-20
            np.testing.assert_allclose(ours[name] / scale, ref[name] / scale, rtol=0, atol=2e-4,
                                       err_msg=f"{what} of {name}")
