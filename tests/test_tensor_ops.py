"""The ops behind the Tensor methods (minicnn/ops/tensor_ops.py) on every backend's device:
arithmetic with broadcasting, exp/log/sqrt/abs/clamp, sum/mean, max/min with an axis,
reshape/transpose/indexing, cat/stack, flatten, dtype and device moves.

Forward values against NumPy (these ops are NumPy's, on NumPy or CuPy arrays), backward
by mc.gradcheck in float64.
"""

import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minicnn as mc
import minicnn.functional as F

from fixtures import tie_free

seeds = st.integers(0, 2**16)


def away_from(values, points, gap=1e-3):
    """values moved off the given points (kinks of abs, clamp's bounds) so central differences see one side."""
    for p in points:
        values = np.where(np.abs(values - p) < gap, p + 2 * gap, values)
    return values


# --------------------------------------------------------------------------- arithmetic
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), seed=seeds)
def test_arithmetic_broadcasts_and_sums_gradients_back(backend, shapes, seed):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    a, b = rng.standard_normal(a_shape), rng.random(b_shape) + 0.5          # b stays away from 0
    A, B = backend.tensor(a, True), backend.tensor(b, True)
    for op in (operator.add, operator.sub, operator.mul, operator.truediv):
        y = op(A, B)
        assert y.shape == shapes.result_shape
        backend.assert_close(y.data, op(a, b), rtol=1e-15)
    backend.assert_close((2.0 - A * 3.0 + 1.0 / B - (-A) ** 3).data, 2.0 - a * 3.0 + 1.0 / b - (-a) ** 3, rtol=1e-12)
    assert mc.gradcheck(lambda a, b: a * b + a / b - b - (-a), [A, B])
    assert mc.gradcheck(lambda a, b: 2.0 - a * 3.0 + 1.0 / b + a ** 3 + b ** 0.5, [A, B])
    assert A.grad.shape == a.shape and B.grad.shape == b.shape


@given(n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), seed=seeds)
def test_matmul(backend, n, k, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    A, B = backend.tensor(a, True), backend.tensor(b, True)
    backend.assert_close((A @ B).data, a @ b, rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda a, b: a @ b, [A, B])


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds)
def test_exp_log_sqrt_abs_clamp(backend, shape, seed):
    rng = np.random.default_rng(seed)
    x = away_from(rng.standard_normal(shape), [0.0, -0.5, 0.4])
    positive = rng.random(shape) + 0.1
    X, P = backend.tensor(x, True), backend.tensor(positive, True)
    backend.assert_close(X.exp().data, np.exp(x), rtol=1e-12)
    backend.assert_close(P.log().data, np.log(positive), rtol=1e-12, atol=1e-15)
    backend.assert_close(P.sqrt().data, np.sqrt(positive), rtol=1e-12)
    backend.assert_equal(X.abs().data, np.abs(x))
    backend.assert_equal(abs(X).data, np.abs(x))
    backend.assert_equal(X.clamp(-0.5, 0.4).data, np.clip(x, -0.5, 0.4))
    backend.assert_equal(X.clamp(min=-0.5).data, np.maximum(x, -0.5))
    backend.assert_equal(X.clamp(max=0.4).data, np.minimum(x, 0.4))
    assert mc.gradcheck(lambda t: t.exp(), [X])
    assert mc.gradcheck(lambda p: p.log() + p.sqrt(), [P])
    assert mc.gradcheck(lambda t: t.abs(), [X])
    assert mc.gradcheck(lambda t: t.clamp(-0.5, 0.4) + t.clamp(min=-0.5) * t.clamp(max=0.4), [X])


def test_clamp_and_abs_gradients_at_their_edges(backend):
    x = backend.tensor(np.array([-2.0, -0.5, 0.0, 0.4, 3.0]), True)
    (x.clamp(-0.5, 0.4) + x.abs()).sum().backward()
    # clamp passes the gradient where min <= x <= max (bounds included); d|x|/dx = sign(x), 0 at 0
    backend.assert_equal(x.grad, np.array([0, 1, 1, 1, 0]) + np.array([-1, -1, 0, 1, 1]))
    with pytest.raises(ValueError, match="at least one of min and max"):
        x.clamp()
    with pytest.raises(ValueError, match=r"min \(1\) must not exceed max \(0\)"):
        x.clamp(1, 0)


def test_comparisons_give_boolean_arrays_of_the_device(backend):
    x = np.array([[-1.0, 0.0, 2.0]])
    t = backend.tensor(x)
    for op in (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne):
        result = op(t, 0.0)
        assert result.dtype == bool
        backend.assert_equal(result, op(x, 0.0))
    backend.assert_equal(t == backend.tensor(x), np.ones_like(x, dtype=bool))


# --------------------------------------------------------------------------- reductions
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), keepdims=st.booleans(), seed=seeds, data=st.data())
def test_sum_and_mean(backend, shape, keepdims, seed, data):
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1)
                     | st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple))
    x = np.random.default_rng(seed).standard_normal(shape)
    X = backend.tensor(x, True)
    backend.assert_close(X.sum(axis, keepdims).data, x.sum(axis=axis, keepdims=keepdims), rtol=1e-12, atol=1e-14)
    backend.assert_close(X.mean(axis, keepdims).data, x.mean(axis=axis, keepdims=keepdims), rtol=1e-12, atol=1e-14)
    assert mc.gradcheck(lambda t: t.sum(axis, keepdims) * 2.0 + t.mean(axis, keepdims), [X])


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), keepdims=st.booleans(), seed=seeds, data=st.data())
def test_max_and_min(backend, shape, keepdims, seed, data):
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1))
    x = tie_free(np.random.default_rng(seed), shape)          # one winner: the max is differentiable
    X = backend.tensor(x, True)
    backend.assert_equal(X.max(axis, keepdims).data, x.max(axis=axis, keepdims=keepdims))
    backend.assert_equal(X.min(axis, keepdims).data, x.min(axis=axis, keepdims=keepdims))
    backend.assert_equal(X.argmax(axis), x.argmax(axis=axis))
    backend.assert_equal(X.argmin(axis), x.argmin(axis=axis))
    assert mc.gradcheck(lambda t: t.max(axis, keepdims) - t.min(axis, keepdims) * 3.0, [X])


def test_max_and_min_send_the_gradient_to_the_first_winner_only(backend):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    X = backend.tensor(x, True)
    X.max(axis=1).sum().backward()
    backend.assert_equal(X.grad, [[0, 1, 0], [1, 0, 0]])
    X = backend.tensor(x, True)
    X.min(axis=0, keepdims=True).sum().backward()
    backend.assert_equal(X.grad, [[1, 0, 0], [0, 1, 1]])
    X = backend.tensor(x, True)
    X.max().backward()
    backend.assert_equal(X.grad, [[0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="empty"):
        backend.tensor(np.zeros((0, 3))).max()


# --------------------------------------------------------------------------- shapes and indexing
def test_reshape_view_transpose_squeeze_unsqueeze_flatten(backend):
    x = np.arange(24.0).reshape(2, 3, 4) / 10
    X = backend.tensor(x, True)
    backend.assert_equal(X.reshape(6, 4).data, x.reshape(6, 4))
    backend.assert_equal(X.view((4, -1)).data, x.reshape(4, -1))
    backend.assert_equal(X.transpose(2, 0, 1).data, x.transpose(2, 0, 1))
    backend.assert_equal(X.T.data, x.T)
    backend.assert_equal(X.flatten().data, x.reshape(-1))
    backend.assert_equal(X.flatten(1).data, x.reshape(2, 12))
    backend.assert_equal(X.unsqueeze(1).data, x[:, None])
    assert X.unsqueeze(-1).shape == (2, 3, 4, 1) and X.unsqueeze(1).squeeze(1).shape == (2, 3, 4)
    assert X.reshape(1, 2, 1, 12).squeeze().shape == (2, 12)
    with pytest.raises(ValueError, match="size 3, not 1"):
        X.squeeze(1)
    assert mc.gradcheck(lambda t: t.reshape(6, 4).T * t.transpose(2, 0, 1).reshape(4, 6) + t.view(4, 6), [X])
    assert mc.gradcheck(lambda t: t.unsqueeze(0).flatten(2).squeeze(0) * 2.0, [X])


def test_flatten(backend):
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    backend.assert_equal(F.flatten(backend.tensor(x)).data, x.reshape(2, 12))
    assert mc.gradcheck(F.flatten, [backend.tensor(x, True)])


def test_getitem(backend):
    x = np.arange(24.0).reshape(2, 3, 4) / 10
    X = backend.tensor(x, True)
    index = np.array([0, 2, 2])                                   # a repeated index adds up in backward
    backend.assert_equal(X[1].data, x[1])
    backend.assert_equal(X[:, 1:3, ::2].data, x[:, 1:3, ::2])
    backend.assert_equal(X[1][backend.array(index)].data, x[1][index])
    assert mc.gradcheck(lambda t: t[:, 1:3, ::2] * 3.0, [X])
    assert mc.gradcheck(lambda t: t[1][backend.array(index)] * 3.0, [X])
    X = backend.tensor(x, True)
    X[0, backend.array(index)].sum().backward()
    backend.assert_equal(X.grad[0, :, 0], [1, 0, 2])


@given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), axis=st.integers(-2, 1), seed=seeds)
def test_cat(backend, sizes, axis, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((s, 2) if axis in (0, -2) else (2, s)) for s in sizes]
    tensors = [backend.tensor(a, True) for a in arrays]
    backend.assert_equal(mc.cat(tensors, axis).data, np.concatenate(arrays, axis))
    assert mc.gradcheck(lambda *t: mc.cat(list(t), axis) * 2.0, tensors)


@given(count=st.integers(1, 3), axis=st.integers(-3, 2), seed=seeds)
def test_stack(backend, count, axis, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((2, 3)) for _ in range(count)]
    tensors = [backend.tensor(a, True) for a in arrays]
    backend.assert_equal(mc.stack(tensors, axis).data, np.stack(arrays, axis))
    assert mc.gradcheck(lambda *t: mc.stack(list(t), axis) * 2.0, tensors)


# --------------------------------------------------------------------------- dtypes and devices
def test_astype_and_to_dtype_send_the_gradient_back_in_the_input_dtype(backend):
    x = np.array([0.1, -2.5, 3.0])
    X = backend.tensor(x, True)
    y = X.astype(np.float32)
    assert y.dtype == np.float32 and y.device == X.device
    backend.assert_equal(y.data, x.astype(np.float32))
    assert X.to(np.float64) is X and X.double() is not X and X.float().dtype == np.float32
    (y * 2.0).sum().backward()
    assert X.grad.dtype == np.float64
    backend.assert_equal(X.grad, [2.0, 2.0, 2.0])
    assert mc.gradcheck(lambda t: t.astype(np.float64) * 3.0, [backend.tensor(x, True)])


def test_to_its_own_device_is_the_tensor_itself(backend):
    X = backend.tensor(np.ones(3), True)
    assert X.device == ("cuda" if backend.device == "cuda" else "cpu")
    assert X.to(X.device) is X


def test_to_another_device_and_back_carries_the_gradient(gpu_backend):
    x = np.array([1.0, -2.0, 3.0])
    X = gpu_backend.tensor(x, True)
    on_cpu = X.to("cpu")
    assert on_cpu.device == "cpu" and isinstance(on_cpu.data, np.ndarray)
    np.testing.assert_array_equal(on_cpu.data, x)
    (on_cpu * on_cpu).sum().backward()
    assert X.grad is not None and mc.Tensor(X.grad).device == "cuda"
    gpu_backend.assert_equal(X.grad, 2 * x)
    back = mc.Tensor(x, requires_grad=True)
    (back.cuda() * 3.0).sum().backward()
    assert isinstance(back.grad, np.ndarray)
    np.testing.assert_array_equal(back.grad, [3.0, 3.0, 3.0])


# --------------------------------------------------------------------------- PyTorch's names (dim, keepdim)
def test_dim_and_keepdim_are_pytorchs_names_for_axis_and_keepdims():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    X, T = mc.Tensor(x), torch.from_numpy(x)
    np.testing.assert_allclose(F.softmax(X, dim=1).data, torch.softmax(T, dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(X, dim=0).data, torch.log_softmax(T, dim=0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(mc.nn.Softmax(dim=1)(X).data, torch.nn.Softmax(dim=1)(T).numpy(), rtol=1e-12)
    np.testing.assert_allclose(X.sum(dim=2, keepdim=True).data, T.sum(dim=2, keepdim=True).numpy(), rtol=1e-12)
    np.testing.assert_allclose(X.mean(dim=(0, 2)).data, T.mean(dim=(0, 2)).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(X.max(dim=1).data, T.max(dim=1).values.numpy())      # values only (NumPy's)
    np.testing.assert_array_equal(X.min(dim=-1, keepdim=True).data, T.min(dim=-1, keepdim=True).values.numpy())
    np.testing.assert_array_equal(X.argmax(dim=2), T.argmax(dim=2).numpy())
    np.testing.assert_array_equal(X.argmin(dim=0), T.argmin(dim=0).numpy())
    np.testing.assert_array_equal(mc.cat([X, X], dim=2).data, torch.cat([T, T], dim=2).numpy())
    np.testing.assert_array_equal(mc.stack([X, X], dim=1).data, torch.stack([T, T], dim=1).numpy())
    assert X.unsqueeze(dim=1).shape == tuple(T.unsqueeze(dim=1).shape)
    assert X[:1].squeeze(dim=0).shape == tuple(T[:1].squeeze(dim=0).shape)
    # NumPy's names give the very same ops
    np.testing.assert_array_equal(F.softmax(X, axis=1).data, F.softmax(X, dim=1).data)
    np.testing.assert_array_equal(X.sum(axis=2, keepdims=True).data, X.sum(dim=2, keepdim=True).data)
    np.testing.assert_array_equal(mc.cat([X, X], axis=2).data, mc.cat([X, X], dim=2).data)


@pytest.mark.parametrize("call", [
    lambda X: F.softmax(X, dim=1, axis=1),
    lambda X: F.log_softmax(X, 1, axis=0),
    lambda X: mc.nn.Softmax(dim=1, axis=1),
    lambda X: X.sum(dim=0, axis=0),
    lambda X: X.mean(0, keepdim=True, keepdims=True),
    lambda X: X.max(dim=0, axis=1),
    lambda X: X.argmax(dim=0, axis=0),
    lambda X: mc.cat([X, X], dim=0, axis=0),
    lambda X: mc.stack([X, X], 0, axis=0),
    lambda X: X.squeeze(dim=0, axis=0),
])
def test_dim_and_axis_together_are_refused(call):
    with pytest.raises(TypeError, match=r"name the same argument .*pass one of them"):
        call(mc.Tensor(np.ones((1, 3))))
