"""Pooling options: ceil_mode, (top, bottom, left, right) and "same"/"valid" padding, padding up
to the kernel where the result is defined, count_include_pad, return_indices, max_unpool2d;
adaptive_avg_pool2d and dropout2d.

- functional, every backend: against naive' loops (max pooling on tie-free inputs),
  backward by mc.gradcheck in float64, windows drawn by hypothesis;
- backend: each kernel backend's pooling methods against the ReferenceBackend;
- shapes: pool_output_size and same_padding against PyTorch's rules;
- PyTorch: F.max_pool2d / avg_pool2d / max_unpool2d / adaptive_avg_pool2d, where torch is installed.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive, nn, random as mc_random
from minicnn.shapes import pool_output_size, same_padding

from fixtures import MANY_EXAMPLES, TOL, randn, tie_free

R = backends.reference_backend()


@st.composite
def pool_case(draw, pad_limit="below_kernel"):
    """A window: kernel, stride, (top, bottom, left, right) padding (each below the kernel, or up to
    twice it for pad_limit="any"), ceil_mode, and an input the padded kernel fits in."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    most = (lambda k: k - 1) if pad_limit == "below_kernel" else (lambda k: 2 * k)
    pads = (draw(st.integers(0, most(kh))), draw(st.integers(0, most(kh))),
            draw(st.integers(0, most(kw))), draw(st.integers(0, most(kw))))
    h = draw(st.integers(max(1, kh - pads[0] - pads[1]), 7))
    w = draw(st.integers(max(1, kw - pads[2] - pads[3]), 7))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel=(kh, kw),
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=pads,
                ceil_mode=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


# --------------------------------------------------------------------------- functional, every backend
@given(case=pool_case())
def test_max_pool2d_options(backend, case):
    k, s, p, ceil = case["kernel"], case["stride"], case["padding"], case["ceil_mode"]
    x = tie_free(np.random.default_rng(case["seed"]), case["shape"])
    y, indices = F.max_pool2d(backend.tensor(x), k, s, p, ceil_mode=ceil, return_indices=True)
    y_ref, indices_ref = naive.max_pool2d(x, k, s, p, ceil, return_indices=True)
    backend.assert_equal(y.data, y_ref)
    backend.assert_equal(indices.data, indices_ref)
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert mc.gradcheck(lambda t: F.max_pool2d(t, k, s, p, ceil_mode=ceil), [backend.tensor(x, True)])


@given(case=pool_case(pad_limit="any"), count_include_pad=st.booleans())
def test_avg_pool2d_options(backend, case, count_include_pad):
    k, s, p, ceil = case["kernel"], case["stride"], case["padding"], case["ceil_mode"]
    if not count_include_pad:      # every window must then hold a pixel: padding below the kernel
        p = (min(p[0], k[0] - 1), min(p[1], k[0] - 1), min(p[2], k[1] - 1), min(p[3], k[1] - 1))
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    if x.shape[2] + p[0] + p[1] < k[0] or x.shape[3] + p[2] + p[3] < k[1]:
        return
    y = F.avg_pool2d(backend.tensor(x), k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    backend.assert_close(y.data, naive.avg_pool2d(x, k, s, p, ceil, count_include_pad), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda t: F.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad),
                        [backend.tensor(x, True)])


@pytest.mark.parametrize("size, kernel, stride, expected_out, expected_pads", [
    (5, 3, 1, 5, (1, 1)), (6, 2, 1, 6, (0, 1)), (5, 2, 2, 3, (0, 1)), (6, 3, 2, 3, (0, 1)),
    (7, 3, 2, 4, (1, 1)), (4, 1, 2, 2, (0, 0)), (1, 3, 2, 1, (1, 1)),
])
def test_same_padding_keeps_ceil_of_size_over_stride(backend, size, kernel, stride, expected_out, expected_pads):
    assert same_padding(size, kernel, stride) == expected_pads
    x = tie_free(np.random.default_rng(0), (1, 2, size, size + 1))
    y = F.max_pool2d(backend.tensor(x), kernel, stride, padding="same")
    assert y.shape == (1, 2, expected_out, -(-(size + 1) // stride))
    pads = expected_pads + same_padding(size + 1, kernel, stride)
    backend.assert_equal(y.data, naive.max_pool2d(x, kernel, stride, pads))
    z = F.avg_pool2d(backend.tensor(x), kernel, stride, padding="same", count_include_pad=False)
    backend.assert_close(z.data, naive.avg_pool2d(x, kernel, stride, pads, count_include_pad=False),
                         rtol=1e-12, atol=1e-12)


def test_valid_padding_is_no_padding(backend):
    x = np.random.default_rng(1).standard_normal((1, 1, 7, 6))
    backend.assert_equal(F.max_pool2d(backend.tensor(x), 3, 2, "valid").data, F.max_pool2d(mc.Tensor(x), 3, 2).data)
    assert nn.AvgPool2d(2, padding="valid")(backend.tensor(x)).shape == (1, 1, 3, 3)


def test_max_unpool2d_inverts_max_pool2d(backend):
    x = tie_free(np.random.default_rng(2), (2, 3, 6, 5))
    y, indices = F.max_pool2d(backend.tensor(x), 2, 2, return_indices=True)
    up = F.max_unpool2d(y, indices, 2, 2, output_size=(6, 5))
    backend.assert_equal(up.data, naive.max_unpool2d(backend.numpy(y.data), backend.numpy(indices.data), (6, 5)))
    y4, indices4 = F.max_pool2d(backend.tensor(x[..., :4]), 2, return_indices=True)
    assert F.max_unpool2d(y4, indices4, 2).shape == (2, 3, 6, 4)        # PyTorch's default size (floor mode)
    assert mc.gradcheck(lambda t: F.max_unpool2d(t, indices, 2, 2, output_size=(6, 5)), [backend.tensor(y.numpy(), True)])
    layer_out = nn.MaxUnpool2d(2)(y, indices, (2, 3, 6, 5))
    backend.assert_equal(layer_out.data, backend.numpy(up.data))


def test_adaptive_avg_pool2d(backend):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 5))
    y = F.adaptive_avg_pool2d(backend.tensor(x), (3, 2))
    expected = np.zeros((2, 3, 3, 2))
    for i in range(3):                        # PyTorch's windows: [floor(i*in/out), ceil((i+1)*in/out))
        for j in range(2):
            rows = slice(i * 7 // 3, -(-(i + 1) * 7 // 3))
            cols = slice(j * 5 // 2, -(-(j + 1) * 5 // 2))
            expected[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    backend.assert_close(y.data, expected, rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 2)), [backend.tensor(x, True)])
    assert nn.AdaptiveAvgPool2d(1)(backend.tensor(x)).shape == (2, 3, 1, 1)
    assert mc.models.AdaptiveAvgPool2d is nn.AdaptiveAvgPool2d


def test_dropout2d_drops_whole_channels_with_the_dropout_hash(backend):
    x = np.random.default_rng(4).standard_normal((3, 8, 4, 5)) + 5.0           # never 0
    y = F.dropout2d(backend.tensor(x), p=0.4, seed=99)
    threshold, scale = mc_random.dropout_threshold_and_scale(0.4, np.dtype(np.float64))
    keep = mc_random.dropout_mask((3, 8), threshold, 99, 0)                   # one draw per (n, c)
    expected = np.where(keep[:, :, None, None], x * scale, 0.0)
    backend.assert_close(y.data, expected, rtol=1e-15)
    backend.assert_close(y.data, naive.dropout2d(x, 0.4, 99), rtol=1e-15)
    assert 0 < keep.sum() < keep.size
    assert mc.gradcheck(lambda t: F.dropout2d(t, p=0.4, seed=99), [backend.tensor(x, True)])
    layer = nn.Dropout2d(0.4).eval()
    assert layer(backend.tensor(x)) is not None
    backend.assert_equal(layer(backend.tensor(x)).data, x)


# --------------------------------------------------------------------------- backend, against the reference
@given(case=pool_case(pad_limit="any"), count_include_pad=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
@MANY_EXAMPLES
def test_pool_methods_match_reference(kernel_backend, case, count_include_pad, dtype):
    be, rng = kernel_backend, np.random.default_rng(case["seed"])
    shape, k, s, p, ceil = case["shape"], case["kernel"], case["stride"], case["padding"], case["ceil_mode"]
    if not count_include_pad:      # the op's limit: every window holds a pixel to average
        p = (min(p[0], k[0] - 1), min(p[1], k[0] - 1), min(p[2], k[1] - 1), min(p[3], k[1] - 1))
    if shape[2] + p[0] + p[1] < k[0] or shape[3] + p[2] + p[3] < k[1]:
        return
    x = randn(rng, shape, dtype)
    y_ref = R.avg_pool2d_forward(x, k, s, p, ceil, count_include_pad)
    be.assert_close(be.impl.avg_pool2d_forward(be.array(x), k, s, p, ceil, count_include_pad), y_ref, **TOL[dtype])
    dy = randn(rng, y_ref.shape, dtype)
    be.assert_close(be.impl.avg_pool2d_backward(be.array(dy), shape, k, s, p, count_include_pad),
                    R.avg_pool2d_backward(dy, shape, k, s, p, count_include_pad), **TOL[dtype])
    if max(p[:2]) < k[0] and max(p[2:]) < k[1]:                 # max pooling's limit
        for x in (tie_free(rng, shape, dtype), rng.integers(-2, 3, shape).astype(dtype)):    # ties too
            y, argmax = be.impl.max_pool2d_forward(be.array(x), k, s, p, ceil)
            y_ref, argmax_ref = R.max_pool2d_forward(x, k, s, p, ceil)
            be.assert_equal(y, y_ref)
            be.assert_equal(argmax, argmax_ref)
            dy = randn(rng, y_ref.shape, dtype)
            be.assert_equal(be.impl.max_pool2d_backward(be.array(dy), argmax, shape, k, s, p),
                            R.max_pool2d_backward(dy, argmax_ref, shape, k, s, p))


# --------------------------------------------------------------------------- shapes
def test_pool_output_size_follows_pytorch():
    torch = pytest.importorskip("torch")
    for size in range(1, 9):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    if size + 2 * p < k:
                        continue
                    for ceil in (False, True):
                        out = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, 1), (k, 1), (s, 1), (p, 0),
                                                             ceil_mode=ceil).shape[2]
                        assert pool_output_size(size, k, s, p, p, ceil) == out, (size, k, s, p, ceil)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, message", [
    (lambda: F.max_pool2d(mc.Tensor(np.ones((1, 1, 6, 6), np.float32)), 3, padding=(0, 3, 0, 0)), ValueError,
     r"max_pool2d: padding \(top, bottom, left, right\) = \(0, 3, 0, 0\) must be smaller than the kernel \(3, 3\)"
     r" on every side: a window lying wholly in the padding would hold no pixel to take the maximum of"),
    (lambda: F.avg_pool2d(mc.Tensor(np.ones((1, 1, 6, 6), np.float32)), 2, padding=2, count_include_pad=False),
     ValueError, r"avg_pool2d: padding .* must be smaller than the kernel .*count_include_pad=False"),
    (lambda: F.max_pool2d(mc.Tensor(np.ones((1, 1, 6, 6), np.float32)), 2, padding="full"), ValueError,
     r"max_pool2d: padding must be .* one of \('same', 'valid'\), got 'full'"),
    (lambda: F.max_pool2d(mc.Tensor(np.ones((1, 1, 6, 6), np.float32)), 2, padding=(1, 1, 1)), TypeError,
     r"max_pool2d: padding must be an int, a pair, a \(top, bottom, left, right\) tuple"),
    (lambda: F.max_pool2d(mc.Tensor(np.ones((1, 1, 6, 6), np.float32)), 2, padding=(0, -1, 0, 0)), ValueError,
     r"max_pool2d: padding must be >= 0"),
    (lambda: nn.MaxPool2d(3, padding=(1, 1, 3, 0)), ValueError, r"MaxPool2d: padding .* must be smaller than the kernel"),
    (lambda: F.max_unpool2d(mc.Tensor(np.ones((1, 1, 2, 2), np.float32)), np.zeros((1, 1, 2, 2), np.float32), 2),
     TypeError, r"max_unpool2d: indices must be the integer tensor"),
    (lambda: F.max_unpool2d(mc.Tensor(np.ones((1, 1, 2, 2), np.float32)), np.full((1, 1, 2, 2), 16), 2), ValueError,
     r"max_unpool2d: indices must lie in \[0, 16\)"),
    (lambda: F.dropout2d(mc.Tensor(np.ones((2, 3), np.float32))), ValueError, r"dropout2d: input must be 4-D"),
    (lambda: nn.Dropout2d(1.5), ValueError, r"Dropout2d: p must be in \[0, 1\]"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_padding_beyond_half_the_kernel_where_defined():
    x = mc.Tensor(np.ones((1, 1, 4, 4)))
    # average pooling that counts the padding: any padding (PyTorch stops at half the kernel)
    y = F.avg_pool2d(x, 2, 1, padding=3)
    assert y.shape == (1, 1, 9, 9) and y.numpy()[0, 0, 0, 0] == 0.0 and y.numpy()[0, 0, 4, 4] == 1.0
    # max pooling: up to kernel - 1 on each side, every window still holds a pixel
    assert F.max_pool2d(x, 3, 1, padding=2).numpy().min() == 1.0


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode, count_include_pad", [
    (3, 2, 1, True, True), (3, 2, 1, True, False), (2, 2, 0, True, True), (3, 3, 1, True, False),
    ((3, 2), (2, 1), (1, 0), False, False), (4, 3, 2, True, True), (2, 3, 1, True, True),
])
def test_pooling_matches_pytorch(kernel, stride, padding, ceil_mode, count_include_pad):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(6)
    x = tie_free(rng, (2, 3, 9, 8))
    xt, xm = torch.tensor(x, requires_grad=True), mc.Tensor(x, requires_grad=True)
    g = None
    for name in ("max", "avg"):
        if name == "max":
            yt, it = tf.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
            ym, im = F.max_pool2d(xm, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
            np.testing.assert_array_equal(im.numpy(), it.numpy())
            up_t = tf.max_unpool2d(yt, it, kernel, stride, padding, output_size=x.shape[2:])
            up_m = F.max_unpool2d(ym, im, kernel, stride, padding, output_size=x.shape[2:])
            np.testing.assert_array_equal(up_m.numpy(), up_t.detach().numpy())
        else:
            yt = tf.avg_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            ym = F.avg_pool2d(xm, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
        np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
        g = rng.standard_normal(yt.shape)
        yt.backward(torch.tensor(g))
        ym.backward(g)
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_asymmetric_padding_matches_padding_first_in_pytorch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = tie_free(np.random.default_rng(7), (1, 2, 7, 6))
    pads = (0, 2, 1, 0)                                   # top, bottom, left, right
    torch_pads = (pads[2], pads[3], pads[0], pads[1])     # PyTorch's F.pad order: left, right, top, bottom
    expected = tf.max_pool2d(tf.pad(torch.tensor(x), torch_pads, value=-np.inf), 3, 2)
    np.testing.assert_array_equal(F.max_pool2d(mc.Tensor(x), 3, 2, pads).numpy(), expected.numpy())
    expected = tf.avg_pool2d(tf.pad(torch.tensor(x), torch_pads), 3, 2)        # zero padding, counted
    np.testing.assert_allclose(F.avg_pool2d(mc.Tensor(x), 3, 2, pads).numpy(), expected.numpy(), rtol=1e-12)


def test_adaptive_avg_pool2d_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((2, 3, 9, 7))
    for size in ((4, 3), (1, 1), (9, 7), (12, 10)):
        np.testing.assert_allclose(F.adaptive_avg_pool2d(mc.Tensor(x), size).numpy(),
                                   torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), size).numpy(), rtol=1e-12)
