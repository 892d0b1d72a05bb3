"""Every csrc kernel, compiled for the CPU (minicnn._host), against the NumPy reference.

The host build walks each kernel's grid-stride loop with one thread, so these
tests check the kernels' index arithmetic on CI, where there is no GPU. Where a
kernel does the same arithmetic in the same order as the reference (copies,
comparisons, the same sums in the same order), the results must be equal bit
for bit; elsewhere (GEMMs, pow, exp, sums in another order) within a tight
tolerance.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_host = pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")

import minicnn as mc  # noqa: E402
import minicnn.functional as F  # noqa: E402
from minicnn import backends, random as mc_random  # noqa: E402
from minicnn.backends import reference  # noqa: E402
from minicnn.shapes import output_size  # noqa: E402

R = backends.reference_backend()
HOST = backends.host_backend()

DTYPES = [np.float32, np.float64]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def kernel(name, dtype):
    return getattr(_host, f"{name}_{np.dtype(dtype).name}")


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def tie_free(rng, shape, dtype):
    """A shuffled linspace: every value distinct, so a max has one winner."""
    values = np.linspace(-1, 1, int(np.prod(shape)), dtype=dtype)
    rng.shuffle(values)
    return values.reshape(shape)


@st.composite
def window_case(draw, max_groups=1):
    """(N, C, H, W), kernel, stride, padding with padding <= kernel/2 and a non-empty output."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    groups = draw(st.integers(1, max_groups))
    n, c = draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return dict(shape=(n, c, h, w), kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), groups=groups,
                seed=draw(st.integers(0, 2**31)), dtype=draw(st.sampled_from(DTYPES)))


def geometry(case):
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = case["shape"], case["kernel"], case["stride"], case["padding"]
    return (h, w, kh, kw, sh, sw, ph, pw, output_size(h, kh, sh, ph), output_size(w, kw, sw, pw))


# --------------------------------------------------------------------------- the dropout hash
def numpy_hash(seed, index):
    """reference.dropout_hash's formula for arbitrary (also > 2^32) indices."""
    index = np.asarray(index, dtype=np.uint64)
    lo = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (index >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        return mc_random._fmix32(np.uint32(seed) ^ mc_random._fmix32(lo + np.uint32(0x9E3779B9) * (hi + np.uint32(1))))


@given(seed=st.integers(0, 2**32 - 1))
@SETTINGS
def test_dropout_hash_matches_reference_bit_for_bit(seed):
    count = 300
    ours = np.array([_host.dropout_hash(seed, i) for i in range(count)], dtype=np.uint32)
    np.testing.assert_array_equal(ours, mc_random.dropout_hash(seed, count))
    big = [2**32 - 1, 2**32, 2**32 + 7, 2**40 + 3, 2**63 - 1]     # the high word matters too
    np.testing.assert_array_equal([_host.dropout_hash(seed, i) for i in big], numpy_hash(seed, big))


# --------------------------------------------------------------------------- im2col / col2im
@given(case=window_case())
@SETTINGS
def test_im2col_bitwise(case):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    x = randn(rng, case["shape"], dtype)
    n, c = x.shape[:2]
    h, w, kh, kw, sh, sw, ph, pw, oh, ow = geometry(case)
    cols = np.full((n, c * kh * kw, oh * ow), np.nan, dtype=dtype)
    kernel("im2col", dtype)(cols.size, x, cols, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    np.testing.assert_array_equal(cols, reference.im2col(x, case["kernel"], case["stride"], case["padding"]))


@given(case=window_case())
@SETTINGS
def test_col2im_bitwise(case):
    # the gather adds a pixel's entries in kernel-offset order, as the reference does
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    n, c = case["shape"][:2]
    h, w, kh, kw, sh, sw, ph, pw, oh, ow = geometry(case)
    cols = randn(rng, (n, c * kh * kw, oh * ow), dtype)
    x = np.full(case["shape"], np.nan, dtype=dtype)
    kernel("col2im", dtype)(x.size, cols, x, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    np.testing.assert_array_equal(x, reference.col2im(cols, case["shape"], case["kernel"], case["stride"], case["padding"]))


# --------------------------------------------------------------------------- bias and reductions
@given(n=st.integers(1, 4), o=st.integers(1, 5), L=st.integers(1, 30), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31))
@SETTINGS
def test_bias_and_sums(n, o, L, dtype, seed):
    rng = np.random.default_rng(seed)
    y, b = randn(rng, (n, o, L), dtype), randn(rng, (o,), dtype)
    expected = y + b.reshape(1, o, 1)
    kernel("bias_forward", dtype)(y.size, y, b, o, L)
    np.testing.assert_array_equal(y, expected)               # one add per element: exact
    rows = np.empty((n * o,), dtype=dtype)
    kernel("sum_rows", dtype)(n * o, y.reshape(n * o, L), rows, L)
    np.testing.assert_allclose(rows, y.reshape(n * o, L).sum(axis=1), **TOL[dtype])
    cols = np.empty((o * L,), dtype=dtype)
    kernel("sum_cols", dtype)(o * L, y, cols, n)
    np.testing.assert_allclose(cols, y.sum(axis=0).reshape(-1), **TOL[dtype])


# --------------------------------------------------------------------------- pooling
@given(case=window_case(), ties=st.booleans())
@SETTINGS
def test_max_pool_forward_and_backward_bitwise(case, ties):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    # with ties (small integers) the winner must be the first maximum in row-major window order
    x = rng.integers(-2, 3, case["shape"]).astype(dtype) if ties else tie_free(rng, case["shape"], dtype)
    geo = geometry(case)
    oh, ow = geo[-2:]
    y = np.empty(case["shape"][:2] + (oh, ow), dtype=dtype)
    argmax = np.empty(y.shape, dtype=np.int64)
    kernel("max_pool_forward", dtype)(y.size, x, y, argmax, *geo)
    y_ref, argmax_ref = R.max_pool2d_forward(x, case["kernel"], case["stride"], case["padding"])
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)

    dy = randn(rng, y.shape, dtype)
    dx = np.full(case["shape"], np.nan, dtype=dtype)
    kernel("max_pool_backward", dtype)(dx.size, dy, argmax, dx, *geo)
    np.testing.assert_array_equal(
        dx, R.max_pool2d_backward(dy, argmax_ref, case["shape"], case["kernel"], case["stride"], case["padding"]))


@given(case=window_case())
@SETTINGS
def test_avg_pool_forward_and_backward(case):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    x = randn(rng, case["shape"], dtype)
    geo = geometry(case)
    oh, ow = geo[-2:]
    y = np.empty(case["shape"][:2] + (oh, ow), dtype=dtype)
    kernel("avg_pool_forward", dtype)(y.size, x, y, *geo)
    np.testing.assert_allclose(y, R.avg_pool2d_forward(x, case["kernel"], case["stride"], case["padding"]),
                               **TOL[dtype])
    dy = randn(rng, y.shape, dtype)
    dx = np.empty_like(x)
    kernel("avg_pool_backward", dtype)(dx.size, dy, dx, *geo)
    np.testing.assert_allclose(
        dx, R.avg_pool2d_backward(dy, case["shape"], case["kernel"], case["stride"], case["padding"]), **TOL[dtype])


# --------------------------------------------------------------------------- LRN
@given(n=st.integers(1, 3), c=st.integers(1, 9), hw=st.integers(1, 12), size=st.sampled_from([1, 3, 5, 7]),
       constants=st.sampled_from([(1e-4, 0.75, 2.0), (0.9, 0.75, 1.0), (0.5, 0.6, 1.5)]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_lrn_forward_and_backward(n, c, hw, size, constants, dtype, seed):
    # alpha near 1 as well as the paper's 1e-4: a tiny alpha would hide a wrong window
    alpha, beta, k = constants
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, c, hw, 1), dtype)
    y, scale = np.empty_like(x), np.empty_like(x)
    kernel("lrn_forward", dtype)(x.size, x, y, scale, c, hw, size, alpha, beta, k)
    y_ref, scale_ref = R.lrn_forward(x, size, dtype(alpha), dtype(beta), dtype(k))
    np.testing.assert_allclose(scale, scale_ref, **TOL[dtype])
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    dy = randn(rng, x.shape, dtype)
    dx = np.empty_like(x)
    kernel("lrn_backward", dtype)(x.size, x, y_ref, scale_ref, dy, dx, c, hw, size, alpha, beta)
    expected = R.lrn_backward(x, y_ref, scale_ref, dy, size, dtype(alpha), dtype(beta), dtype(k))
    np.testing.assert_allclose(dx, expected, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)


# --------------------------------------------------------------------------- activations and dropout
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), slope=st.sampled_from([0.0, 0.01, 0.2]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_relu_bitwise(shape, slope, dtype, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, dtype)
    x.flat[0] = 0.0                       # the subgradient at 0 is the slope
    y, dx = np.empty_like(x), np.empty_like(x)
    kernel("relu_forward", dtype)(x.size, x, y, slope)
    np.testing.assert_array_equal(y, R.relu_forward(x, slope))
    dy = randn(rng, shape, dtype)
    kernel("relu_backward", dtype)(x.size, x, dy, dx, slope)
    np.testing.assert_array_equal(dx, R.relu_backward(x, dy, slope))


@given(size=st.integers(1, 3000), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES))
@SETTINGS
def test_dropout_bitwise(size, p, seed, dtype):
    rng = np.random.default_rng(seed % 2**31)
    x = randn(rng, (size,), dtype)
    threshold, scale = mc_random.dropout_threshold_and_scale(p, np.dtype(dtype))
    y = np.empty_like(x)
    kernel("dropout_forward", dtype)(x.size, x, y, threshold, float(scale), seed)
    np.testing.assert_array_equal(y, R.dropout_forward(x, threshold, scale, seed))
    dx = np.empty_like(x)
    kernel("dropout_backward", dtype)(x.size, x, dx, threshold, float(scale), seed)
    np.testing.assert_array_equal(dx, R.dropout_backward(x, threshold, scale, seed))


# --------------------------------------------------------------------------- loss
@given(n=st.integers(1, 6), k=st.integers(1, 12), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31),
       spread=st.sampled_from([1.0, 30.0]))
@SETTINGS
def test_softmax_cross_entropy(n, k, dtype, seed, spread):
    rng = np.random.default_rng(seed)
    logits = randn(rng, (n, k), dtype) * dtype(spread)      # large logits test the max shift
    labels = rng.integers(0, k, n).astype(np.int64)
    probs, rows, loss = np.empty_like(logits), np.empty((n,), dtype), np.empty((1,), dtype)
    kernel("softmax_cross_entropy_forward", dtype)(n, logits, labels, probs, rows, k)
    kernel("mean_forward", dtype)(1, rows, loss, n)
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(probs, probs_ref, **TOL[dtype])
    np.testing.assert_allclose(loss[0], loss_ref, **TOL[dtype])
    dloss = np.array([0.7], dtype=dtype)
    dlogits = np.empty_like(logits)
    kernel("softmax_cross_entropy_backward", dtype)(logits.size, probs_ref, labels, dloss, dlogits, n, k)
    np.testing.assert_allclose(dlogits, R.softmax_cross_entropy_backward(probs_ref, labels, dloss[0]), **TOL[dtype])


def test_cross_entropy_bad_label_gives_nan_not_a_bad_read():
    logits = np.zeros((2, 3), np.float32)
    probs, rows = np.empty_like(logits), np.empty((2,), np.float32)
    kernel("softmax_cross_entropy_forward", np.float32)(2, logits, np.array([1, 7]), probs, rows, 3)
    assert np.isfinite(rows[0]) and np.isnan(rows[1])


# --------------------------------------------------------------------------- optimizers
@given(size=st.integers(1, 50), momentum=st.sampled_from([0.0, 0.9]), weight_decay=st.sampled_from([0.0, 5e-4]),
       nesterov=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_sgd_update_bitwise(size, momentum, weight_decay, nesterov, dtype, seed):
    rng = np.random.default_rng(seed)
    param, grad, velocity = (randn(rng, (size,), dtype) for _ in range(3))
    p_ref, v_ref = param.copy(), velocity.copy()
    for _ in range(3):
        kernel("sgd_update", dtype)(size, param, grad, velocity, 0.01, momentum, weight_decay, int(nesterov))
        R.sgd_update(p_ref, grad, v_ref, 0.01, momentum, weight_decay, nesterov)
    # the same operations in the same order, with the scalars rounded to T as NumPy does: exact
    np.testing.assert_array_equal(param, p_ref)
    np.testing.assert_array_equal(velocity, v_ref)


@given(size=st.integers(1, 50), weight_decay=st.sampled_from([0.0, 1e-2]), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31))
@SETTINGS
def test_adam_update_bitwise(size, weight_decay, dtype, seed):
    rng = np.random.default_rng(seed)
    param, grad = randn(rng, (size,), dtype), randn(rng, (size,), dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    p_ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
    for step in range(1, 4):
        HOST.adam_update(param, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
        R.adam_update(p_ref, grad, m_ref, v_ref, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
    # adam_update computes 1 - beta and the bias corrections in double, as the reference: exact
    for ours, ref in ((param, p_ref), (m, m_ref), (v, v_ref)):
        np.testing.assert_array_equal(ours, ref)


# --------------------------------------------------------------------------- whole ops: host backend vs reference
@given(case=window_case(max_groups=3), out_per_group=st.integers(1, 3), bias=st.booleans())
@SETTINGS
def test_conv2d_host_backend(case, out_per_group, bias):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    n, c, h, w = case["shape"]
    g = case["groups"]
    x = randn(rng, case["shape"], dtype)
    wt = randn(rng, (g * out_per_group, c // g) + case["kernel"], dtype)
    b = randn(rng, (g * out_per_group,), dtype) if bias else None
    args = (case["stride"], case["padding"], g)
    y = HOST.conv2d_forward(x, wt, b, *args)
    np.testing.assert_allclose(y, R.conv2d_forward(x, wt, b, *args), **TOL[dtype])
    dy = randn(rng, y.shape, dtype)
    for ours, ref in zip(HOST.conv2d_backward(x, wt, dy, *args), R.conv2d_backward(x, wt, dy, *args)):
        np.testing.assert_allclose(ours, ref, **TOL[dtype])


def test_conv2d_host_backend_in_chunks(monkeypatch):
    # a tiny column budget forces one image per im2col chunk; results must not change
    from minicnn.backends import kernels as _kernels
    rng = np.random.default_rng(0)
    x, wt, b = randn(rng, (5, 4, 7, 7), np.float64), randn(rng, (6, 2, 3, 3), np.float64), randn(rng, (6,), np.float64)
    args = ((2, 1), (1, 1), 2)
    whole = HOST.conv2d_forward(x, wt, b, *args), HOST.conv2d_backward(x, wt, np.ones((5, 6, 4, 7)), *args)
    monkeypatch.setattr(_kernels, "COLS_BUDGET", 1)
    chunked = HOST.conv2d_forward(x, wt, b, *args), HOST.conv2d_backward(x, wt, np.ones((5, 6, 4, 7)), *args)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-13)
    for a, b_ in zip(chunked[1], whole[1]):
        np.testing.assert_allclose(a, b_, rtol=1e-13, atol=1e-13)


@given(n=st.integers(1, 5), fin=st.integers(1, 8), fout=st.integers(1, 8), bias=st.booleans(),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_linear_host_backend(n, fin, fout, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = randn(rng, (n, fin), dtype), randn(rng, (fout, fin), dtype)
    b = randn(rng, (fout,), dtype) if bias else None
    np.testing.assert_allclose(HOST.linear_forward(x, w, b), R.linear_forward(x, w, b), **TOL[dtype])
    dy = randn(rng, (n, fout), dtype)
    for ours, ref in zip(HOST.linear_backward(x, w, dy), R.linear_backward(x, w, dy)):
        np.testing.assert_allclose(ours, ref, **TOL[dtype])


def test_host_backend_copies_non_contiguous_and_rejects_bad_dtypes():
    rng = np.random.default_rng(1)
    x = randn(rng, (2, 3, 8, 8), np.float32)[:, :, ::2, ::2]          # a strided view: copied
    y, _ = HOST.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, R.max_pool2d_forward(np.ascontiguousarray(x), (2, 2), (2, 2), (0, 0))[0])
    with pytest.raises(TypeError, match="relu: argument 'x' must be float32 or float64"):
        HOST.relu_forward(np.arange(4), 0.0)
    with pytest.raises(TypeError, match="conv2d: argument 'weight' is float64"):
        HOST.conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 3, 3)), None, (1, 1), (0, 0), 1)
    with pytest.raises(TypeError, match="expected a float32 array"):        # the C++ check, below Python's
        _host.relu_forward_float32(4, np.zeros(4), np.zeros(4, np.float32), 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _host.relu_forward_float32(4, np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), 0.0)
    readonly = np.zeros(4, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _host.relu_forward_float32(4, np.zeros(4, np.float32), readonly, 0.0)


# --------------------------------------------------------------------------- through minicnn.functional


def _small_net_step(dtype, backend):
    """Forward and backward of a small AlexNet-like stack; returns the loss and every gradient."""
    mc.set_cpu_backend(backend)
    try:
        rng = np.random.default_rng(3)
        x = mc.Tensor(randn(rng, (4, 3, 15, 15), dtype), requires_grad=True)
        w1 = mc.Tensor(randn(rng, (8, 3, 5, 5), dtype) * 0.2, requires_grad=True)
        b1 = mc.Tensor(randn(rng, (8,), dtype), requires_grad=True)
        w2 = mc.Tensor(randn(rng, (6, 4, 3, 3), dtype) * 0.2, requires_grad=True)
        wf = mc.Tensor(randn(rng, (5, 6 * 2 * 2), dtype) * 0.2, requires_grad=True)
        bf = mc.Tensor(randn(rng, (5,), dtype), requires_grad=True)
        h = F.relu(F.conv2d(x, w1, b1, stride=2, padding=1))                    # (4, 8, 7, 7)
        h = F.local_response_norm(h, size=5, alpha=0.5, beta=0.75, k=1.0)
        h = F.max_pool2d(h, 3, stride=2)                                        # (4, 8, 3, 3)
        h = F.leaky_relu(F.conv2d(h, w2, None, padding=1, groups=2), 0.1)      # (4, 6, 3, 3)
        h = F.avg_pool2d(h, 2, stride=1)                                        # (4, 6, 2, 2)
        h = F.dropout(F.flatten(h), p=0.3, seed=1234)
        loss = F.cross_entropy(F.linear(h, wf, bf), np.array([0, 4, 2, 1]))
        loss.backward()
        return [loss.numpy()] + [t.grad.copy() for t in (x, w1, b1, w2, wf, bf)]
    finally:
        mc.set_cpu_backend("reference")


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_ops_kernels_backend_equals_reference(dtype):
    ours = _small_net_step(dtype, "kernels")
    ref = _small_net_step(dtype, "reference")
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"] * 50, atol=TOL[dtype]["atol"] * 50)


def test_set_cpu_backend_selects_host_backend():
    mc.set_cpu_backend("kernels")
    try:
        assert backends.for_array(np.zeros(1)) is HOST
    finally:
        mc.set_cpu_backend("reference")
    assert backends.for_array(np.zeros(1)) is R


# --------------------------------------------------------------------------- the pybind11 loader's GEMM mapping, without a GPU
class _CublasModel:
    """minicnn._cuda's gemm_<dtype>, modelled in NumPy on raw host pointers, down to the
    column-major cublas<T>gemmStridedBatched call it makes (operands swapped, ops kept)."""

    def __init__(self, dtype):
        self.ctype = {np.float32: "c_float", np.float64: "c_double"}[dtype]

    def _matrix(self, address, rows, cols, ld):
        """A column-major rows x cols matrix with leading dimension ld, as a writable NumPy view."""
        import ctypes
        span = (cols - 1) * ld + rows
        flat = np.ctypeslib.as_array((getattr(ctypes, self.ctype) * span).from_address(address))
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, flat.itemsize * ld))

    def cublas(self, op_a, op_b, m, n, k, A, lda, sa, B, ldb, sb, C, ldc, sc, batch):
        size = np.dtype(getattr(np, "float32" if self.ctype == "c_float" else "float64")).itemsize
        for i in range(batch):
            a = self._matrix(A + i * sa * size, *((k, m) if op_a else (m, k)), lda)
            b = self._matrix(B + i * sb * size, *((n, k) if op_b else (k, n)), ldb)
            c = self._matrix(C + i * sc * size, m, n, ldc)
            c[...] = (a.T if op_a else a) @ (b.T if op_b else b)

    def gemm(self, trans_a, trans_b, M, N, K, A, lda, sa, B, ldb, sb, C, ldc, sc, batch, stream):
        # src/cuda_module.cu: row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
        self.cublas(trans_b, trans_a, N, M, K, B, ldb, sb, A, lda, sa, C, ldc, sc, batch)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pybind11_loader_gemm_mapping_on_a_cublas_model(dtype):
    import types
    from minicnn.backends.cuda import Pybind11Loader

    loader = object.__new__(Pybind11Loader)          # no CuPy, no GPU: NumPy arrays and host pointers
    loader.cp = types.SimpleNamespace(ndarray=np.ndarray)
    model = _CublasModel(dtype)
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


# --------------------------------------------------------------------------- both CUDA loaders' Python side, on the host kernels
def _fake_cupy():
    """NumPy dressed as CuPy, for the parts of CuPy the loaders use."""
    import types
    fake = types.ModuleType("fake_cupy")
    fake.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    fake.cuda = types.SimpleNamespace(driver=types.SimpleNamespace(CUDADriverError=RuntimeError),
                                      get_current_stream=lambda: stream)
    return fake


class _FakeRawModule:
    """cupy.RawModule's stand-in: get_function("im2col<float>") gives a launcher that checks
    the arguments are typed as the kernel declares them (CuPy passes no type information)
    and runs the host build of that kernel."""

    launched = set()

    def get_function(self, expression):
        name, ctype = expression[:-1].split("<")
        t = {"float": np.float32, "double": np.float64}[ctype]
        function = kernel(name, t)

        def launch(grid, block, args):
            assert grid[0] >= 1 and block[0] >= 1
            assert isinstance(args[0], np.int64), "count must be an int64 (mc_index)"
            for a in args[1:]:
                assert isinstance(a, (np.ndarray, np.int64, np.uint32, t)), f"{expression}: badly typed {a!r}"
                assert not isinstance(a, np.floating) or isinstance(a, t), f"{expression}: {a!r} is not a {ctype}"
            _FakeRawModule.launched.add(name)
            function(*args)
        return launch


class _FakeCudaExtension:
    """minicnn._cuda's stand-in: pointers (host addresses here) are mapped back to the
    arrays they came from, and the host build of the kernel runs; GEMMs use the cuBLAS model."""

    def __init__(self):
        self.arrays = {}

    def pointer(self, a):
        self.arrays[a.ctypes.data] = a       # the latest array at an address is the one passed now
        return a.ctypes.data

    def __getattr__(self, name):
        if name.startswith("gemm_"):
            return _CublasModel(np.dtype(name[5:]).type).gemm
        function = getattr(_host, name)

        def call(*args):
            *args, stream = args
            assert stream == 0
            function(*[self.arrays[a] if isinstance(a, int) and a in self.arrays else a for a in args])
        return call


def _fake_cuda_backend(loader_name):
    from minicnn.backends import kernels as _kernels, cuda
    fake = _fake_cupy()
    if loader_name == "rawkernel":
        loader = object.__new__(cuda.RawKernelLoader)
        loader.module, loader.functions = _FakeRawModule(), {}
    else:
        loader = object.__new__(cuda.Pybind11Loader)
        loader.ext = _FakeCudaExtension()
        loader.pointer = loader.ext.pointer
    loader.cp = loader.xp = fake
    return _kernels.KernelBackend(loader, "cuda")


@pytest.mark.parametrize("loader_name", ["rawkernel", "pybind11"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_loaders_python_side_on_host_kernels(loader_name, dtype):
    """backends/cuda.py's loaders, with NumPy for CuPy and the host build for the GPU: every op
    of the interface against the reference. On a GPU tests/test_cuda.py does the real thing."""
    be = _fake_cuda_backend(loader_name)
    rng = np.random.default_rng(11)
    tol = TOL[dtype]
    x, w, b = randn(rng, (3, 4, 9, 8), dtype), randn(rng, (6, 2, 3, 3), dtype), randn(rng, (6,), dtype)
    args = ((2, 1), (1, 1), 2)
    y = be.conv2d_forward(x, w, b, *args)
    np.testing.assert_allclose(y, R.conv2d_forward(x, w, b, *args), **tol)
    dy = randn(rng, y.shape, dtype)
    for ours, ref in zip(be.conv2d_backward(x, w, dy, *args), R.conv2d_backward(x, w, dy, *args)):
        np.testing.assert_allclose(ours, ref, **tol)
    xl, wl, bl, dyl = randn(rng, (5, 7), dtype), randn(rng, (3, 7), dtype), randn(rng, (3,), dtype), randn(rng, (5, 3), dtype)
    np.testing.assert_allclose(be.linear_forward(xl, wl, bl), R.linear_forward(xl, wl, bl), **tol)
    for ours, ref in zip(be.linear_backward(xl, wl, dyl), R.linear_backward(xl, wl, dyl)):
        np.testing.assert_allclose(ours, ref, **tol)
    pool = ((3, 3), (2, 2), (1, 1))
    y, argmax = be.max_pool2d_forward(x, *pool)
    y_ref, argmax_ref = R.max_pool2d_forward(x, *pool)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dyp = randn(rng, y.shape, dtype)
    np.testing.assert_array_equal(be.max_pool2d_backward(dyp, argmax, x.shape, *pool),
                                  R.max_pool2d_backward(dyp, argmax_ref, x.shape, *pool))
    np.testing.assert_allclose(be.avg_pool2d_forward(x, *pool), R.avg_pool2d_forward(x, *pool), **tol)
    np.testing.assert_allclose(be.avg_pool2d_backward(dyp, x.shape, *pool), R.avg_pool2d_backward(dyp, x.shape, *pool),
                               **tol)
    y, scale = be.lrn_forward(x, 3, 0.5, 0.75, 1.0)
    y_ref, scale_ref = R.lrn_forward(x, 3, dtype(0.5), dtype(0.75), dtype(1.0))
    np.testing.assert_allclose(y, y_ref, **tol)
    dyx = randn(rng, x.shape, dtype)
    np.testing.assert_allclose(be.lrn_backward(x, y, scale, dyx, 3, 0.5, 0.75, 1.0),
                               R.lrn_backward(x, y_ref, scale_ref, dyx, 3, dtype(0.5), dtype(0.75), dtype(1.0)),
                               rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_array_equal(be.relu_forward(x, 0.1), R.relu_forward(x, 0.1))
    np.testing.assert_array_equal(be.relu_backward(x, dyx, 0.1), R.relu_backward(x, dyx, 0.1))
    threshold, dscale = mc_random.dropout_threshold_and_scale(0.4, np.dtype(dtype))
    np.testing.assert_array_equal(be.dropout_forward(x, threshold, dscale, 77), R.dropout_forward(x, threshold, dscale, 77))
    np.testing.assert_array_equal(be.dropout_backward(dyx, threshold, dscale, 77),
                                  R.dropout_backward(dyx, threshold, dscale, 77))
    logits, labels = randn(rng, (4, 6), dtype), np.array([0, 5, 2, 2])
    loss, probs = be.softmax_cross_entropy_forward(logits, labels)
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(loss, loss_ref, **tol)
    np.testing.assert_allclose(be.softmax_cross_entropy_backward(probs, labels, np.array(0.5, dtype)),
                               R.softmax_cross_entropy_backward(probs_ref, labels, dtype(0.5)), **tol)
    p, g, v = randn(rng, (10,), dtype), randn(rng, (10,), dtype), np.zeros(10, dtype)
    p_ref, v_ref = p.copy(), v.copy()
    be.sgd_update(p, g, v, 0.1, 0.9, 1e-3, True)
    R.sgd_update(p_ref, g, v_ref, 0.1, 0.9, 1e-3, True)
    np.testing.assert_array_equal(p, p_ref)
    m, v2 = np.zeros(10, dtype), np.zeros(10, dtype)
    m_ref, v2_ref = m.copy(), v2.copy()
    be.adam_update(p, g, m, v2, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    R.adam_update(p_ref, g, m_ref, v2_ref, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    np.testing.assert_array_equal(p, p_ref)


def test_every_kernel_is_known_to_the_cuda_loaders():
    """cuda.kernel_names() (what NVRTC instantiates) lists exactly the kernels minicnn._host binds."""
    from minicnn.backends.cuda import kernel_names
    bound = {name.rsplit("_", 1)[0] for name in dir(_host) if name.endswith("_float32")}
    assert bound == set(kernel_names())
