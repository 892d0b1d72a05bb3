"""conv2d, and the kernels under it (im2col, col2im, bias add, the bias-gradient sums).

- functional: F.conv2d on every backend against naive.conv2d, backward by mc.gradcheck in
  float64, over shapes, strides, paddings and groups drawn by hypothesis;
- backend: each kernel backend's conv2d_forward/backward against the ReferenceBackend;
- kernel: the raw minicnn._host kernels against the reference's NumPy twins.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive
from minicnn.backends import reference

from fixtures import DTYPES, MANY_EXAMPLES, TOL, geometry, host_kernel, randn, scaled, window_case

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "groups": st.sampled_from([1, 2]), "cg": st.integers(1, 2),
    "og": st.integers(1, 2), "k": st.integers(1, 3), "stride": st.integers(1, 3), "pad": st.integers(0, 2),
    "h": st.integers(3, 6), "w": st.integers(3, 6), "bias": st.booleans(), "seed": st.integers(0, 2**16),
})


@given(case=conv_cases)
def test_conv2d_forward_and_backward(backend, case):
    rng = np.random.default_rng(case["seed"])
    k, s, p, g = case["k"], case["stride"], case["pad"], case["groups"]
    x = rng.standard_normal((case["n"], case["cg"] * g, case["h"], case["w"]))
    w = rng.standard_normal((case["og"] * g, case["cg"], k, k))
    b = rng.standard_normal(case["og"] * g) if case["bias"] else None
    bias = None if b is None else backend.tensor(b)
    y = F.conv2d(backend.tensor(x), backend.tensor(w), bias, stride=s, padding=p, groups=g)
    backend.assert_close(y.data, naive.conv2d(x, w, b, s, p, g), rtol=1e-12, atol=1e-12)
    inputs = [backend.tensor(x, True), backend.tensor(w, True)] + ([backend.tensor(b, True)] if b is not None else [])
    assert mc.gradcheck(lambda *t: F.conv2d(*t, stride=s, padding=p, groups=g), inputs)


def test_conv2d_float32_matches_float64(backend):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3))
    y32 = F.conv2d(backend.tensor(x.astype(np.float32)), backend.tensor(w.astype(np.float32)), padding=1, groups=2)
    assert y32.dtype == np.float32
    backend.assert_close(y32.data, naive.conv2d(x, w, None, 1, 1, 2), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- backend, against the reference
@given(case=window_case(max_groups=3), out_per_group=st.integers(1, 3), bias=st.booleans())
@MANY_EXAMPLES
def test_conv2d_matches_reference(kernel_backend, case, out_per_group, bias):
    rng, dtype, be = np.random.default_rng(case["seed"]), case["dtype"], kernel_backend
    n, c, h, w = case["shape"]
    g = case["groups"]
    x = randn(rng, case["shape"], dtype)
    wt = randn(rng, (g * out_per_group, c // g) + case["kernel"], dtype)
    b = randn(rng, (g * out_per_group,), dtype) if bias else None
    (ph, pw) = case["padding"]
    args = (case["stride"], (ph, ph, pw, pw), g, (1, 1))     # stride, (top, bottom, left, right), groups, dilation
    y = be.impl.conv2d_forward(be.array(x), be.array(wt), be.array(b), *args)
    be.assert_close(y, R.conv2d_forward(x, wt, b, *args), **TOL[dtype])
    dy = randn(rng, y.shape, dtype)
    for ours, ref in zip(be.impl.conv2d_backward(be.array(x), be.array(wt), be.array(dy), *args, True, True, True),
                         R.conv2d_backward(x, wt, dy, *args)):
        be.assert_close(ours, ref, **TOL[dtype])


CONV_CASES = [
    # (N, C, H, W), (O, kh, kw), stride, padding, groups
    ((3, 6, 9, 7), (4, 3, 2), (2, 1), (1, 1), 2),
    ((1, 1, 5, 5), (1, 5, 5), (1, 1), (0, 0), 1),
    ((4, 12, 6, 6), (9, 1, 1), (1, 1), (0, 0), 3),
]
ALEXNET_CONV_CASES = [
    ((2, 3, 227, 227), (96, 11, 11), (4, 4), (0, 0), 1),     # AlexNet conv1
    ((2, 96, 27, 27), (256, 5, 5), (1, 1), (2, 2), 2),       # AlexNet conv2, two towers
]


def check_conv2d_case(be, case, dtype):
    shape, (o, kh, kw), stride, padding, groups = case
    args = (stride, (padding[0], padding[0], padding[1], padding[1]), groups, (1, 1))
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, shape, dtype), randn(rng, (o, shape[1] // groups, kh, kw), dtype) * 0.1, randn(rng, (o,), dtype)
    y_ref = R.conv2d_forward(x, w, b, *args)
    y = be.impl.conv2d_forward(be.array(x), be.array(w), be.array(b), *args)
    be.assert_close(y, y_ref, **scaled(TOL[dtype], 10), gpu_scale=10)
    dy = randn(rng, y_ref.shape, dtype)
    ours = be.impl.conv2d_backward(be.array(x), be.array(w), be.array(dy), *args, True, True, True)
    for a, r in zip(ours, R.conv2d_backward(x, w, dy, *args)):
        be.assert_close(a, r, **scaled(TOL[dtype], 100), gpu_scale=100)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_cases(kernel_backend, case, dtype):
    check_conv2d_case(kernel_backend, case, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALEXNET_CONV_CASES, ids=["conv1", "conv2"])
def test_conv2d_at_alexnet_sizes(gpu_backend, case, dtype):
    check_conv2d_case(gpu_backend, case, dtype)


def test_conv2d_in_chunks(kernel_backend, monkeypatch):
    # a tiny column budget forces one image per im2col chunk: the results must not change
    from minicnn.backends import kernels as _kernels
    be = kernel_backend
    rng = np.random.default_rng(0)
    x, wt, b = randn(rng, (5, 4, 7, 7)), randn(rng, (6, 2, 3, 3)), randn(rng, (6,))
    args = ((2, 1), (1, 1, 1, 1), 2, (1, 1))
    dy = np.ones((5, 6, 4, 7))

    def run():
        return (be.impl.conv2d_forward(be.array(x), be.array(wt), be.array(b), *args),
                be.impl.conv2d_backward(be.array(x), be.array(wt), be.array(dy), *args, True, True, True))

    whole = run()
    monkeypatch.setattr(_kernels, "COLS_BUDGET", 1)
    chunked = run()
    be.assert_close(chunked[0], be.numpy(whole[0]), rtol=1e-13)
    for a, b_ in zip(chunked[1], whole[1]):
        be.assert_close(a, be.numpy(b_), rtol=1e-13, atol=1e-13)

    # float32, stride 1, against the reference
    rng = np.random.default_rng(1)
    x, w = randn(rng, (5, 4, 8, 8), np.float32), randn(rng, (6, 2, 3, 3), np.float32)
    dy = randn(rng, (5, 6, 8, 8), np.float32)
    args = ((1, 1), (1, 1, 1, 1), 2, (1, 1))
    be.assert_close(be.impl.conv2d_forward(be.array(x), be.array(w), None, *args),
                    R.conv2d_forward(x, w, None, *args), **scaled(TOL[np.float32], 10), gpu_scale=10)
    for a, r in zip(be.impl.conv2d_backward(be.array(x), be.array(w), be.array(dy), *args, True, True, True),
                    R.conv2d_backward(x, w, dy, *args)):
        be.assert_close(a, r, **scaled(TOL[np.float32], 100), gpu_scale=100)


# --------------------------------------------------------------------------- kernels: im2col / col2im
@given(case=window_case())
@MANY_EXAMPLES
def test_im2col_bitwise(case):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    x = randn(rng, case["shape"], dtype)
    n, c = x.shape[:2]
    h, w, kh, kw, sh, sw, ph, pw, oh, ow = geometry(case)
    cols = np.full((c * kh * kw, n, oh * ow), np.nan, dtype=dtype)
    host_kernel("im2col", dtype)(c * kh * kw * n, x, cols, n, c, h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow)
    np.testing.assert_array_equal(cols, reference.im2col(x, case["kernel"], case["stride"], (ph, ph, pw, pw), (1, 1)))


@given(case=window_case())
@MANY_EXAMPLES
def test_col2im_bitwise(case):
    # the gather adds a pixel's entries in kernel-offset order, as the reference does
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    n, c = case["shape"][:2]
    h, w, kh, kw, sh, sw, ph, pw, oh, ow = geometry(case)
    cols = randn(rng, (c * kh * kw, n, oh * ow), dtype)
    x = np.full(case["shape"], np.nan, dtype=dtype)
    host_kernel("col2im", dtype)(n * c * h, cols, x, n, c, h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow)
    np.testing.assert_array_equal(x, reference.col2im(cols, case["shape"], case["kernel"], case["stride"],
                                                      (ph, ph, pw, pw), (1, 1)))


# --------------------------------------------------------------------------- kernels: bias and reductions
@given(n=st.integers(1, 4), o=st.integers(1, 5), L=st.integers(1, 30), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_bias_and_sums(n, o, L, dtype, seed):
    rng = np.random.default_rng(seed)
    y, b = randn(rng, (n, o, L), dtype), randn(rng, (o,), dtype)
    expected = y + b.reshape(1, o, 1)
    host_kernel("bias_forward", dtype)(y.size, y, b, o, L)
    np.testing.assert_array_equal(y, expected)               # one add per element: exact
    rows = np.empty((n * o,), dtype=dtype)
    host_kernel("sum_rows", dtype)(n * o, y.reshape(n * o, L), rows, L, 1)
    np.testing.assert_allclose(rows, y.reshape(n * o, L).sum(axis=1), **TOL[dtype])
    cols = np.empty((o * L,), dtype=dtype)
    host_kernel("sum_cols", dtype)(o * L, y, cols, n)
    np.testing.assert_allclose(cols, y.sum(axis=0).reshape(-1), **TOL[dtype])
