"""What docs/kernels.md promises about floating point on the GPU, checked on a GPU.

Both GPU builds compile with MC_CUDA_MATH_FLAGS (csrc/common.cuh): no fused
multiply-add, IEEE division and square root, float32 denormals flushed to zero. So:

- every kernel that calls no exp/log/pow computes, on the GPU, the very bits the host
  build (minicnn._host) computes from the same inputs, through either loader, in
  float64 always and in float32 unless a denormal is read or written;
- the kernels that call exp/log/pow (LRN, the softmax kernels) agree with the host
  build to a few ulps (CUDA's math library is not glibc's);
- a float32 denormal becomes 0 on the GPU and stays on the host.

On CI (no GPU) these tests are skipped, "no CUDA device"; tests/test_nvcc_compile.py
checks the PTX for the same promise there. Run on a GPU by scripts/gpu_round.sh (numerics, memcheck-numerics).
"""

import numpy as np
import pytest

from minicnn import backends
from minicnn.random import dropout_threshold_and_scale

pytestmark = pytest.mark.gpu

HOST = backends.host_backend()
DTYPES = [np.float32, np.float64]
# a few ulps: CUDA's expf/logf/powf are within 1-4 ulps, glibc's within 1, and softmax's
# exp(z - max - log_sum) carries the ulp of its argument (up to ~30) into a relative error
ULPS = {np.float32: dict(rtol=64 * np.finfo(np.float32).eps, atol=1e-30),
        np.float64: dict(rtol=64 * np.finfo(np.float64).eps, atol=1e-300)}


@pytest.fixture(params=["rawkernel", "pybind11"])
def be(request):
    pytest.importorskip("cupy", reason="CuPy is not installed")
    pytest.importorskip("minicnn._host", reason="minicnn._host is not built")
    if request.param == "pybind11":
        try:
            import minicnn._cuda  # noqa: F401
        except ImportError as e:
            pytest.skip(f"minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .): {e}")
    from minicnn.backends import cuda
    return cuda.backend(request.param)


def gpu(a):
    import cupy
    return cupy.asarray(a)


def cpu(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def same_bits(ours, host, what):
    np.testing.assert_array_equal(cpu(ours), host, err_msg=f"{what}: the GPU and the host build differ")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_without_exp_log_pow_equal_the_host_build_bit_for_bit(be, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 13, 11)).astype(dtype)
    dy_x = rng.standard_normal(x.shape).astype(dtype)
    # im2col and col2im, straight through the loader
    n, c, h, w, geo = 2, 6, 13, 11, (3, 3, 2, 2, 1, 1, 2, 1, 6, 6)   # kh kw sh sw pad_top pad_left dh dw OH OW
    cols_host = np.empty((c * 9, n, 36), dtype)
    rows = c * 9 * n                            # im2col: one plane of entries per (c, ki, kj, n)
    HOST.loader.run("im2col", rows, x, cols_host, n, c, h, w, *geo)
    cols = gpu(np.zeros_like(cols_host))
    be.loader.run("im2col", rows, gpu(x), cols, n, c, h, w, *geo)
    same_bits(cols, cols_host, "im2col")
    back_host = np.empty_like(x)
    HOST.loader.run("col2im", n * c * h, cols_host, back_host, n, c, h, w, *geo)   # one row per (n, c, y)
    back = gpu(np.zeros_like(x))
    be.loader.run("col2im", n * c * h, gpu(cols_host), back, n, c, h, w, *geo)
    same_bits(back, back_host, "col2im")
    # pooling
    pool = ((3, 3), (2, 2), (1, 1))
    y, argmax = be.max_pool2d_forward(gpu(x), *pool)
    y_host, argmax_host = HOST.max_pool2d_forward(x, *pool)
    same_bits(y, y_host, "max_pool_forward")
    same_bits(argmax, argmax_host, "max_pool_forward argmax")
    dy = rng.standard_normal(y_host.shape).astype(dtype)
    same_bits(be.max_pool2d_backward(gpu(dy), gpu(argmax_host), x.shape, *pool),
              HOST.max_pool2d_backward(dy, argmax_host, x.shape, *pool), "max_pool_backward")
    same_bits(be.avg_pool2d_forward(gpu(x), *pool), HOST.avg_pool2d_forward(x, *pool), "avg_pool_forward")
    same_bits(be.avg_pool2d_backward(gpu(dy), x.shape, *pool), HOST.avg_pool2d_backward(dy, x.shape, *pool),
              "avg_pool_backward")
    # activations and dropout
    same_bits(be.relu_forward(gpu(x), 0.1), HOST.relu_forward(x, 0.1), "relu_forward")
    same_bits(be.relu_backward(gpu(x), gpu(dy_x), 0.1), HOST.relu_backward(x, dy_x, 0.1), "relu_backward")
    threshold, scale = dropout_threshold_and_scale(0.3, np.dtype(dtype))
    for offset in (0, 2**32 + 5):       # a data-parallel rank's first element (the hash's high word too)
        same_bits(be.dropout_forward(gpu(x), threshold, scale, 7, offset),
                  HOST.dropout_forward(x, threshold, scale, 7, offset), "dropout_forward")
        same_bits(be.dropout_backward(gpu(dy_x), threshold, scale, 7, offset),
                  HOST.dropout_backward(dy_x, threshold, scale, 7, offset), "dropout_backward")
    # bias add and the reductions (sum_rows over 32 threads per row, then sum_cols)
    b = rng.standard_normal(6).astype(dtype)
    yb, yb_host = gpu(x.reshape(2, 6, -1)), x.reshape(2, 6, -1).copy()
    be.loader.run("bias_forward", yb.size, yb, gpu(b), 6, yb.shape[2])
    HOST.loader.run("bias_forward", yb_host.size, yb_host, b, 6, yb_host.shape[2])
    same_bits(yb, yb_host, "bias_forward")
    long_rows = rng.standard_normal((37, 3025)).astype(dtype)
    same_bits(be._sum_rows(gpu(long_rows)), HOST._sum_rows(long_rows), "sum_rows")
    same_bits(be._bias_grad(gpu(x.reshape(2, 6, -1))), HOST._bias_grad(x.reshape(2, 6, -1)), "sum_rows + sum_cols")
    # optimizer updates: no FMA, IEEE division and square root
    for momentum, nesterov in ((0.0, False), (0.9, False), (0.9, True)):
        p, g, v = (rng.standard_normal(1000).astype(dtype) for _ in range(3))
        gp, gv = gpu(p), gpu(v)
        be.sgd_update(gp, gpu(g), gv, 0.01, momentum, 5e-4, nesterov)
        HOST.sgd_update(p, g, v, 0.01, momentum, 5e-4, nesterov)
        same_bits(gp, p, f"sgd_update momentum={momentum} nesterov={nesterov}")
        same_bits(gv, v, "sgd_update velocity")
    p, g = rng.standard_normal(1000).astype(dtype), rng.standard_normal(1000).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    gp, gm, gv = gpu(p), gpu(m), gpu(v)
    for step in (1, 2, 3):
        be.adam_update(gp, gpu(g), gm, gv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        HOST.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
    for ours, host, what in ((gp, p, "adam param"), (gm, m, "adam m"), (gv, v, "adam v")):
        same_bits(ours, host, what)
    m, v = np.zeros_like(p), np.zeros_like(p)
    gm, gv = gpu(m), gpu(v)
    for step in (1, 2, 3):
        be.adamw_update(gp, gpu(g), gm, gv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        HOST.adamw_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
    for ours, host, what in ((gp, p, "adamw param"), (gm, m, "adamw m"), (gv, v, "adamw v")):
        same_bits(ours, host, what)
    for momentum, centered in ((0.0, False), (0.9, True)):
        sq, ga, buf = (np.zeros_like(p) for _ in range(3))
        gsq, gga, gbuf = gpu(sq), gpu(ga), gpu(buf)
        for _ in range(3):
            be.rmsprop_update(gp, gpu(g), gsq, gga, gbuf, 1e-2, 0.99, 1e-8, 1e-2, momentum, centered)
            HOST.rmsprop_update(p, g, sq, ga, buf, 1e-2, 0.99, 1e-8, 1e-2, momentum, centered)
        for ours, host, what in ((gp, p, "rmsprop param"), (gsq, sq, "rmsprop square_avg"),
                                 (gga, ga, "rmsprop grad_avg"), (gbuf, buf, "rmsprop buffer")):
            same_bits(ours, host, f"{what} momentum={momentum} centered={centered}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_with_exp_log_pow_agree_with_the_host_build_to_a_few_ulps(be, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 96, 13, 13)).astype(dtype)
    for alpha, beta, k in ((1e-4, 0.75, 2.0), (0.9, 0.75, 1.0)):
        y, scale = be.lrn_forward(gpu(x), 5, alpha, beta, k)
        y_host, scale_host = HOST.lrn_forward(x, 5, alpha, beta, k)
        same_bits(scale, scale_host, "lrn_forward scale (sums of squares, no pow)")
        np.testing.assert_allclose(cpu(y), y_host, **ULPS[dtype])
        dy = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_allclose(cpu(be.lrn_backward(gpu(x), gpu(y_host), gpu(scale_host), gpu(dy), 5, alpha, beta, k)),
                                   HOST.lrn_backward(x, y_host, scale_host, dy, 5, alpha, beta, k),
                                   rtol=ULPS[dtype]["rtol"] * 4, atol=ULPS[dtype]["rtol"])
    logits, labels = (rng.standard_normal((128, 1000)) * 5).astype(dtype), rng.integers(0, 1000, 128)
    loss, probs = be.softmax_cross_entropy_forward(gpu(logits), gpu(labels))
    loss_host, probs_host = HOST.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(cpu(probs), probs_host, **ULPS[dtype])
    np.testing.assert_allclose(cpu(loss), loss_host, **ULPS[dtype])


def test_float32_denormals_flush_to_zero_on_the_gpu_only(be):
    tiny = np.finfo(np.float32).tiny                   # 2^-126, the smallest normal float32
    param = np.array([tiny / 4, -tiny / 4, tiny, 1.0], np.float32)    # two denormals, two normals
    grad = np.zeros(4, np.float32)
    on_gpu, on_host = gpu(param), param.copy()
    be.sgd_update(on_gpu, gpu(grad), None, 0.1, 0.0, 0.0, False)    # param -= 0.1 * 0: no change in exact arithmetic
    HOST.sgd_update(on_host, grad, None, 0.1, 0.0, 0.0, False)
    np.testing.assert_array_equal(on_host, param)                     # the host keeps denormals
    np.testing.assert_array_equal(cpu(on_gpu), [0.0, -0.0, tiny, 1.0])  # the GPU reads them as 0 (FTZ)
    # float64 has no flush: its denormals survive on the GPU too
    small = np.array([np.finfo(np.float64).tiny / 4, 1.0])
    on_gpu64 = gpu(small)
    be.sgd_update(on_gpu64, gpu(np.zeros(2)), None, 0.1, 0.0, 0.0, False)
    np.testing.assert_array_equal(cpu(on_gpu64), small)



@pytest.mark.parametrize("dtype", DTYPES)
def test_normalization_pooling_options_and_loss_kernels_equal_the_host_build_bit_for_bit(be, dtype):
    """batch_norm.cuh (its sums in double, in the same order), average pooling's divisors (ceil_mode,
    count_include_pad, (top, bottom, left, right) padding), nll_loss and squared_error: no exp/log/pow."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 36)).astype(dtype) * 3 + 1
    dy = rng.standard_normal(x.shape).astype(dtype)
    w, b = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    stats, stats_host = be.batch_norm_statistics(gpu(x)), HOST.batch_norm_statistics(x)
    for ours, host, what in zip(stats, stats_host, ("mean", "var")):
        same_bits(ours, host, f"batch_norm_statistics {what}")
    mean, var = stats_host
    same_bits(be.batch_norm_forward(gpu(x), gpu(mean), gpu(var), gpu(w), gpu(b), 1e-5),
              HOST.batch_norm_forward(x, mean, var, w, b, 1e-5), "batch_norm_forward")
    for batch_statistics in (True, False):
        ours = be.batch_norm_backward(gpu(x), gpu(dy), gpu(mean), gpu(var), gpu(w), 1e-5, batch_statistics)
        host = HOST.batch_norm_backward(x, dy, mean, var, w, 1e-5, batch_statistics)
        for o, h, what in zip(ours, host, ("dx", "dweight", "dbias")):
            same_bits(o, h, f"batch_norm_backward {what} (batch statistics: {batch_statistics})")
    image = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    for padding, ceil_mode, count_include_pad in (((0, 2, 1, 0), True, True), ((1, 1, 1, 1), True, False),
                                                  ((2, 0, 0, 1), False, True)):
        pool = ((3, 3), (2, 2), padding)
        y_host = HOST.avg_pool2d_forward(image, *pool, ceil_mode, count_include_pad)
        same_bits(be.avg_pool2d_forward(gpu(image), *pool, ceil_mode, count_include_pad), y_host, "avg_pool_forward")
        g = rng.standard_normal(y_host.shape).astype(dtype)
        same_bits(be.avg_pool2d_backward(gpu(g), image.shape, *pool, count_include_pad),
                  HOST.avg_pool2d_backward(g, image.shape, *pool, count_include_pad), "avg_pool_backward")
    log_probs, weight = rng.standard_normal((3, 4, 5)).astype(dtype), rng.random(4).astype(dtype)
    labels = rng.integers(0, 4, (3, 5))
    labels[1, 2] = -100
    for ours, host, what in zip(be.nll_loss_forward(gpu(log_probs), gpu(labels), gpu(weight), -100),
                                HOST.nll_loss_forward(log_probs, labels, weight, -100), ("loss", "counted")):
        same_bits(ours, host, f"nll_loss_forward {what}")
    d = rng.standard_normal((3, 5)).astype(dtype)
    same_bits(be.nll_loss_backward(gpu(labels), gpu(weight), -100, gpu(d), 4),
              HOST.nll_loss_backward(labels, weight, -100, d, 4), "nll_loss_backward")
    t = rng.standard_normal(x.shape).astype(dtype)
    same_bits(be.squared_error_forward(gpu(x), gpu(t)), HOST.squared_error_forward(x, t), "squared_error_forward")
    same_bits(be.squared_error_backward(gpu(x), gpu(t), gpu(dy)), HOST.squared_error_backward(x, t, dy),
              "squared_error_backward")
