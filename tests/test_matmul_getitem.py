"""Tensor matmul batched and broadcast over leading axes, and Tensor.__getitem__ with slices, integer
arrays and masks: forward against NumPy, backward by mc.gradcheck in float64 and against PyTorch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc

PAIRS = [((2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((3,), (3, 4)),
         ((5, 2, 3), (3,)), ((3,), (3,)), ((1, 2, 3), (4, 3, 2)), ((4, 1, 2, 3), (5, 3, 2))]


@pytest.mark.parametrize("shape_a, shape_b", PAIRS)
def test_matmul_forward_and_backward(backend, shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    y = backend.tensor(a) @ backend.tensor(b)
    backend.assert_close(y.data, np.matmul(a, b), rtol=1e-12, atol=1e-14)
    assert mc.gradcheck(lambda p, q: p @ q, [backend.tensor(a, True), backend.tensor(b, True)])


@pytest.mark.parametrize("shape_a, shape_b", PAIRS)
def test_matmul_matches_pytorch(shape_a, shape_b):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    am, bm = mc.Tensor(a, requires_grad=True), mc.Tensor(b, requires_grad=True)
    yt, ym = at @ bt, am @ bm
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    ym.backward(g)
    np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(am.grad, at.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bm.grad, bt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape_a, shape_b, message", [
    ((2, 3), (2, 3), r"matmul: inner dimensions differ, \(2, 3\) @ \(2, 3\)"),
    ((2, 2, 3), (3, 3, 4), r"matmul: the batch dimensions \(2,\) and \(3,\) .* do not broadcast"),
    ((), (3,), r"matmul: both operands need at least one dimension"),
])
def test_matmul_bad_shapes(shape_a, shape_b, message):
    with pytest.raises(ValueError, match=message):
        mc.Tensor(np.ones(shape_a)) @ mc.Tensor(np.ones(shape_b))


INDICES = [
    (slice(1, 3),), (slice(None, None, 2), 1), (Ellipsis, slice(1, None)), (None, 0),
    (np.array([0, 2, 2, 1]),), (slice(None), np.array([4, 1, 1])), (np.array([0, 3]), np.array([2, 2])),
    (np.array([[0, 1], [1, 1]]),), (1, np.array([0, 0, 3])),
]


@pytest.mark.parametrize("index", INDICES)
def test_getitem_forward_and_backward(backend, index):
    x = np.random.default_rng(2).standard_normal((4, 5))
    backend.assert_equal(backend.tensor(x)[index].data, x[index])
    assert mc.gradcheck(lambda t: t[index] * 3.0, [backend.tensor(x, True)])


def test_getitem_with_a_mask_and_with_tensors(backend):
    x = np.random.default_rng(3).standard_normal((4, 5))
    mask = x > 0
    assert mc.gradcheck(lambda t: t[mask] * 2.0, [backend.tensor(x, True)])
    rows = mc.Tensor(np.array([3, 0, 3]))
    backend.assert_equal(backend.tensor(x)[rows].data, x[[3, 0, 3]])


@given(rows=st.lists(st.integers(0, 3), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_getitem_repeated_rows_add_up_as_in_pytorch(rows, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3))
    index = np.array(rows)
    xt, xm = torch.tensor(x, requires_grad=True), mc.Tensor(x, requires_grad=True)
    g = rng.standard_normal((len(rows), 3))
    xt[torch.tensor(index)].backward(torch.tensor(g))
    xm[index].backward(g)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-12)
