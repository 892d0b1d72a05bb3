"""Every op: forward against a plain-loop definition written here, backward by mc.gradcheck
in float64, over shapes, strides, paddings and groups drawn by hypothesis."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
import minicnn.functional as F

settings.register_profile("ops", max_examples=15, deadline=None)
settings.load_profile("ops")


def tensor(array, grad=True):
    return mc.Tensor(np.asarray(array, dtype=np.float64), requires_grad=grad)


def tie_free(rng, shape):
    """Distinct values in random order, so max pooling has a unique winner everywhere."""
    values = np.linspace(-1.0, 1.0, int(np.prod(shape)))
    rng.shuffle(values)
    return values.reshape(shape)


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


# --------------------------------------------------------------------------- conv2d
def conv2d_loops(x, w, b, stride, pad, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh, ow = out_size(h, kh, stride, pad), out_size(wd, kw, stride, pad)
    y = np.zeros((n, o, oh, ow))
    for ni in range(n):
        for oi in range(o):
            g = oi // og
            for yy in range(oh):
                for xx in range(ow):
                    total = 0.0 if b is None else b[oi]
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r, q = yy * stride + i - pad, xx * stride + j - pad
                                if 0 <= r < h and 0 <= q < wd:
                                    total += x[ni, g * cg + ci, r, q] * w[oi, ci, i, j]
                    y[ni, oi, yy, xx] = total
    return y


conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "groups": st.sampled_from([1, 2]), "cg": st.integers(1, 2),
    "og": st.integers(1, 2), "k": st.integers(1, 3), "stride": st.integers(1, 3), "pad": st.integers(0, 2),
    "h": st.integers(3, 6), "w": st.integers(3, 6), "bias": st.booleans(), "seed": st.integers(0, 2**16),
})


@given(conv_cases)
def test_conv2d_forward_and_backward(case):
    rng = np.random.default_rng(case["seed"])
    k, s, p, g = case["k"], case["stride"], case["pad"], case["groups"]
    x = rng.standard_normal((case["n"], case["cg"] * g, case["h"], case["w"]))
    w = rng.standard_normal((case["og"] * g, case["cg"], k, k))
    b = rng.standard_normal(case["og"] * g) if case["bias"] else None
    y = F.conv2d(tensor(x), tensor(w), None if b is None else tensor(b), stride=s, padding=p, groups=g)
    np.testing.assert_allclose(y.numpy(), conv2d_loops(x, w, b, s, p, g), rtol=1e-12, atol=1e-12)
    inputs = [tensor(x), tensor(w)] + ([tensor(b)] if b is not None else [])
    assert mc.gradcheck(lambda *t: F.conv2d(*t, stride=s, padding=p, groups=g), inputs)


def test_conv2d_float32_matches_float64():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3))
    y32 = F.conv2d(mc.Tensor(x.astype(np.float32)), mc.Tensor(w.astype(np.float32)), padding=1, groups=2)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), conv2d_loops(x, w, None, 1, 1, 2), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- pooling
def max_pool_loops(x, k, s, p):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, s, p), out_size(w, k, s, p)
    y = np.full((n, c, oh, ow), -np.inf)
    for a in range(n):
        for b in range(c):
            for yy in range(oh):
                for xx in range(ow):
                    for i in range(k):
                        for j in range(k):
                            r, q = yy * s + i - p, xx * s + j - p
                            if 0 <= r < h and 0 <= q < w:
                                y[a, b, yy, xx] = max(y[a, b, yy, xx], x[a, b, r, q])
    return y


def avg_pool_loops(x, k, s, p):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, s, p), out_size(w, k, s, p)
    y = np.zeros((n, c, oh, ow))
    for yy in range(oh):
        for xx in range(ow):
            for i in range(k):
                for j in range(k):
                    r, q = yy * s + i - p, xx * s + j - p
                    if 0 <= r < h and 0 <= q < w:
                        y[:, :, yy, xx] += x[:, :, r, q] / (k * k)
    return y


pool_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "c": st.integers(1, 3), "k": st.integers(1, 4), "stride": st.integers(1, 3),
    "pad": st.integers(0, 2), "h": st.integers(4, 7), "w": st.integers(4, 7), "seed": st.integers(0, 2**16),
})


@given(pool_cases)
def test_max_pool2d_forward_and_backward(case):
    k, s, p = case["k"], case["stride"], min(case["pad"], case["k"] // 2)
    x = tie_free(np.random.default_rng(case["seed"]), (case["n"], case["c"], case["h"], case["w"]))
    y = F.max_pool2d(tensor(x), k, s, p)
    np.testing.assert_array_equal(y.numpy(), max_pool_loops(x, k, s, p))
    assert mc.gradcheck(lambda t: F.max_pool2d(t, k, s, p), [tensor(x)])


@given(pool_cases)
def test_avg_pool2d_forward_and_backward(case):
    k, s, p = case["k"], case["stride"], min(case["pad"], case["k"] // 2)
    x = np.random.default_rng(case["seed"]).standard_normal((case["n"], case["c"], case["h"], case["w"]))
    y = F.avg_pool2d(tensor(x), k, s, p)
    np.testing.assert_allclose(y.numpy(), avg_pool_loops(x, k, s, p), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [tensor(x)])


def test_max_pool_overlapping_alexnet_sizes_and_stride_default():
    x = tensor(np.random.default_rng(0).standard_normal((1, 2, 55, 55)))
    assert F.max_pool2d(x, 3, 2).shape == (1, 2, 27, 27)
    assert F.max_pool2d(x, 5).shape == (1, 2, 11, 11)   # stride defaults to the kernel size


def test_max_pool_ties_go_to_the_first_maximum():
    x = tensor(np.ones((1, 1, 2, 2)))
    y = F.max_pool2d(x, 2)
    y.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 0], [0, 0]])


def test_global_avg_pool2d():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(F.global_avg_pool2d(tensor(x)).numpy(), x.mean(axis=(2, 3)))
    assert mc.gradcheck(F.global_avg_pool2d, [tensor(x)])


# --------------------------------------------------------------------------- LRN
def lrn_loops(x, size, alpha, beta, k):
    """b[c] = a[c] / (k + alpha * sum_{|c'-c| <= size//2} a[c']^2)^beta, clipped at the edges."""
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    for a in range(n):
        for ch in range(c):
            for r in range(h):
                for q in range(w):
                    total = sum(x[a, j, r, q] ** 2 for j in range(max(0, ch - size // 2), min(c, ch + size // 2 + 1)))
                    y[a, ch, r, q] = x[a, ch, r, q] / (k + alpha * total) ** beta
    return y


@given(st.fixed_dictionaries({
    "c": st.integers(1, 8), "size": st.sampled_from([1, 3, 5, 7]), "seed": st.integers(0, 2**16),
    "constants": st.sampled_from([(1e-4, 0.75, 2.0), (0.9, 0.75, 1.1), (1.0, 0.5, 1.0), (0.5, 1.5, 0.8)]),
    "caffe": st.booleans(),
}))
def test_local_response_norm_forward_and_backward(case):
    alpha, beta, k = case["constants"]
    size = case["size"]
    x = np.random.default_rng(case["seed"]).standard_normal((2, case["c"], 3, 2))
    y = F.local_response_norm(tensor(x), size, alpha, beta, k, divide_alpha_by_size=case["caffe"])
    effective_alpha = alpha / size if case["caffe"] else alpha
    np.testing.assert_allclose(y.numpy(), lrn_loops(x, size, effective_alpha, beta, k), rtol=1e-12)
    assert mc.gradcheck(lambda t: F.local_response_norm(t, size, alpha, beta, k, case["caffe"]), [tensor(x)])


def test_lrn_paper_convention_differs_from_caffe_by_alpha_over_n():
    x = tensor(np.random.default_rng(0).standard_normal((1, 7, 2, 2)) * 10)
    paper = F.local_response_norm(x, 5, alpha=1.0, k=1.0).numpy()
    caffe = F.local_response_norm(x, 5, alpha=5.0, k=1.0, divide_alpha_by_size=True).numpy()
    np.testing.assert_allclose(paper, caffe, rtol=1e-12)


# --------------------------------------------------------------------------- activations
@given(st.integers(0, 2**16), st.sampled_from([0.0, 0.01, 0.2]))
def test_relu_family(seed, slope):
    x = np.random.default_rng(seed).standard_normal((3, 4)) + 0.05  # keep away from the kink at 0
    x[np.abs(x) < 1e-3] = 0.5
    expected = np.array([[v if v > 0 else slope * v for v in row] for row in x])
    op = F.relu if slope == 0.0 else (lambda t: F.leaky_relu(t, slope))
    np.testing.assert_array_equal(op(tensor(x)).numpy(), expected)
    assert mc.gradcheck(op, [tensor(x)])


@given(st.integers(0, 2**16))
def test_sigmoid_and_tanh(seed):
    x = np.random.default_rng(seed).standard_normal((3, 4)) * 3
    np.testing.assert_allclose(F.sigmoid(tensor(x)).numpy(), [[1 / (1 + math.exp(-v)) for v in r] for r in x])
    np.testing.assert_allclose(F.tanh(tensor(x)).numpy(), [[math.tanh(v) for v in r] for r in x])
    assert mc.gradcheck(F.sigmoid, [tensor(x)])
    assert mc.gradcheck(F.tanh, [tensor(x)])


def test_sigmoid_does_not_overflow():
    y = F.sigmoid(mc.Tensor(np.array([-1000.0, 1000.0], dtype=np.float32))).numpy()
    np.testing.assert_array_equal(y, [0.0, 1.0])


# --------------------------------------------------------------------------- dropout
def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def dropout_keep(seed, index, p):
    lo, hi = index & 0xFFFFFFFF, index >> 32
    h = fmix32(seed ^ fmix32((lo + 0x9E3779B9 * (hi + 1)) & 0xFFFFFFFF))
    return (h >> 8) >= round(p * (1 << 24))


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_mask_is_the_counter_hash(seed, p):
    x = np.random.default_rng(0).standard_normal((4, 5)) + 3.0
    y = F.dropout(tensor(x), p, training=True, seed=seed).numpy()
    keep = np.array([dropout_keep(seed, i, p) for i in range(x.size)]).reshape(x.shape)
    np.testing.assert_allclose(y, np.where(keep, x / (1 - p), 0.0), rtol=1e-12)
    assert mc.gradcheck(lambda t: F.dropout(t, p, seed=seed), [tensor(x)])


def test_dropout_keeps_one_minus_p_and_preserves_the_mean_and_eval_is_identity():
    x = mc.Tensor(np.ones((200, 500), dtype=np.float32))
    y = F.dropout(x, 0.5, training=True, seed=123).numpy()
    assert abs((y != 0).mean() - 0.5) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    assert F.dropout(x, 0.5, training=False) is x
    mc.manual_seed(7)
    first = F.dropout(x, 0.5).numpy()
    mc.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), first)   # same seed, same mask
    assert not np.array_equal(F.dropout(x, 0.5).numpy(), first)        # the next call draws a new mask


def test_dropout_module_follows_train_and_eval():
    layer = mc.nn.Dropout(0.5)
    x = mc.Tensor(np.ones((10, 10), dtype=np.float32))
    assert (layer(x).numpy() == 0).any()
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


# --------------------------------------------------------------------------- linear, flatten, softmax, losses
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.booleans(), st.integers(0, 2**16))
def test_linear(n, fan_in, fan_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_out, fan_in)), rng.standard_normal(fan_out)
    expected = np.array([[sum(x[i, k] * w[o, k] for k in range(fan_in)) + (b[o] if bias else 0)
                          for o in range(fan_out)] for i in range(n)])
    inputs = [tensor(x), tensor(w)] + ([tensor(b)] if bias else [])
    np.testing.assert_allclose(F.linear(*inputs).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(F.linear, inputs)


def test_flatten():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(F.flatten(tensor(x)).numpy(), x.reshape(2, 12))
    assert mc.gradcheck(F.flatten, [tensor(x)])


@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**16), st.sampled_from([0, 1, -1]))
def test_softmax_and_log_softmax(n, c, seed, axis):
    z = np.random.default_rng(seed).standard_normal((n, c)) * 5
    cols = z if axis in (1, -1) else z.T
    expected = np.array([[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in cols])
    expected = expected if axis in (1, -1) else expected.T
    np.testing.assert_allclose(F.softmax(tensor(z), axis).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(F.log_softmax(tensor(z), axis).numpy(), np.log(expected), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t: F.softmax(t, axis), [tensor(z)])
    assert mc.gradcheck(lambda t: F.log_softmax(t, axis), [tensor(z)])


@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**16))
def test_cross_entropy(n, c, seed):
    rng = np.random.default_rng(seed)
    z, labels = rng.standard_normal((n, c)) * 3, rng.integers(0, c, n)
    expected = np.mean([-(z[i, labels[i]] - math.log(sum(math.exp(v) for v in z[i]))) for i in range(n)])
    np.testing.assert_allclose(F.cross_entropy(tensor(z), labels).item(), expected, rtol=1e-12)
    assert mc.gradcheck(lambda t: F.cross_entropy(t, labels), [tensor(z)])


def test_cross_entropy_is_stable_for_huge_logits():
    z = mc.Tensor(np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 0]))
    assert np.isfinite(loss.item()) and abs(loss.item() - 500.0) < 1e-3
    loss.backward()
    assert np.isfinite(z.grad).all()


@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_binary_cross_entropy_with_logits(n, c, seed):
    rng = np.random.default_rng(seed)
    z, t = rng.standard_normal((n, c)) * 4, (rng.random((n, c)) > 0.5).astype(np.float64)
    sig = lambda v: 1 / (1 + math.exp(-v))
    expected = np.mean([-(t[i, j] * math.log(sig(z[i, j])) + (1 - t[i, j]) * math.log(1 - sig(z[i, j])))
                        for i in range(n) for j in range(c)])
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(tensor(z), t).item(), expected, rtol=1e-10)
    assert mc.gradcheck(lambda v: F.binary_cross_entropy_with_logits(v, t), [tensor(z)])
