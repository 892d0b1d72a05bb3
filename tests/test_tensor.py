"""The autograd: graph recording, reverse topological backward, accumulation, broadcasting, no_grad."""

import numpy as np
import pytest

import minicnn as mc


def t(values, grad=True):
    return mc.Tensor(np.asarray(values, dtype=np.float64), requires_grad=grad)


def test_arithmetic_gradients_by_gradcheck():
    rng = np.random.default_rng(0)
    a, b = t(rng.standard_normal((3, 4))), t(rng.standard_normal((4, 2)))
    c = t(rng.random((3, 4)) + 0.5)
    fn = lambda a, b, c: ((a * c - a / c + 2.0 - a ** 3) @ b).exp().sum(axis=1) + (c.log() * -a).mean()
    assert mc.gradcheck(fn, [a, b, c])


def test_reshape_transpose_indexing_gradients():
    x = t(np.arange(24.0).reshape(2, 3, 4) / 10)
    assert mc.gradcheck(lambda x: x.reshape(6, 4).T[1:3] * x.transpose(2, 0, 1).reshape(4, 6)[1:3], [x])
    idx = np.array([0, 2, 2])  # a repeated index adds up in backward
    assert mc.gradcheck(lambda x: x[1][idx] * 3.0, [x])


def test_a_tensor_used_twice_accumulates_both_gradients():
    x = t([2.0, 3.0])
    y = x * x + x           # dy/dx = 2x + 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = t([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_broadcasting_is_summed_back_in_backward():
    a, b = t(np.ones((3, 4))), t(np.ones((4,)))
    row = t(np.ones((1, 4)))
    (a * b + row).sum().backward()
    assert b.grad.shape == (4,) and row.grad.shape == (1, 4)
    np.testing.assert_allclose(b.grad, [3.0] * 4)
    np.testing.assert_allclose(row.grad, [[3.0] * 4])


def test_backward_runs_in_reverse_topological_order():
    x = t([1.5])
    a = x * 2.0
    b = a * a          # a feeds b and c: a's gradient must be complete before it is passed on
    c = a + b
    c.sum().backward()  # c = 2x + 4x^2, dc/dx = 2 + 8x
    np.testing.assert_allclose(x.grad, [2 + 8 * 1.5])


def test_no_grad_records_nothing_and_detach_cuts_the_graph():
    x = t([1.0, 2.0])
    with mc.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    z = (x * 2.0).detach() * x
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])  # the detached factor is a constant


def test_tensors_that_need_no_gradient_record_no_graph():
    x = mc.Tensor(np.ones(3))
    y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_backward_needs_a_scalar_or_a_gradient():
    x = t([1.0, 2.0])
    with pytest.raises(RuntimeError, match="single-element"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(np.ones(3))


def test_dtypes_and_devices():
    assert mc.Tensor([1, 2]).dtype == np.float32             # Python data becomes float32
    assert mc.Tensor(np.zeros(2)).dtype == np.float64        # arrays keep their dtype
    assert mc.Tensor(np.zeros(2, dtype=np.int64)).dtype == np.int64
    with pytest.raises(TypeError, match="floating point"):
        mc.Tensor(np.zeros(2, dtype=np.int64), requires_grad=True)
    x = mc.Tensor(np.ones(2))
    assert x.device == "cpu" and x.to("cpu") is x
    with pytest.raises(ValueError, match="device must be"):
        x.to("gpu")
    copy = x.numpy()
    copy[0] = 5
    assert x.data[0] == 1  # numpy() is a copy


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match="inner dimensions"):
        t(np.ones((2, 3))) @ t(np.ones((2, 3)))


def test_pytorch_style_methods():
    x = mc.Tensor(np.arange(6.0).reshape(2, 3))
    assert x.size() == (2, 3) and x.size(1) == 3 and x.numel() == 6 and x.dim() == 2
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert x.view(3, 2).shape == (3, 2) and x.flatten().shape == (6,) and x.flatten(1).shape == (2, 3)
    assert x.unsqueeze(0).shape == (1, 2, 3) and x.unsqueeze(-1).shape == (2, 3, 1)
    assert x.unsqueeze(1).squeeze(1).shape == (2, 3) and mc.Tensor(np.ones((1, 3, 1))).squeeze().shape == (3,)
    with pytest.raises(ValueError, match="axis 0 has size 2"):
        x.squeeze(0)
    np.testing.assert_array_equal(x > 2.0, [[False, False, False], [True, True, True]])
    np.testing.assert_array_equal(x == x, np.ones((2, 3), bool))
    assert {x: 1}[x] == 1                                  # hashable by identity
    np.testing.assert_array_equal(x.max(axis=1).numpy(), [2.0, 5.0])
    np.testing.assert_array_equal(x.min(axis=0, keepdims=True).numpy(), [[0.0, 1.0, 2.0]])
    np.testing.assert_array_equal(x.argmax(axis=1), [2, 2])
    np.testing.assert_array_equal((x - 2.5).abs().clamp(0.5, 2.0).numpy(), [[2.0, 1.5, 0.5], [0.5, 1.5, 2.0]])
    assert x.to(np.float64).dtype == np.float64 and x.cpu() is x


def test_max_and_clamp_gradients():
    x = t([[1.0, 3.0, 3.0], [0.5, -1.0, 2.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [0, 0, 1]])    # the first maximum only
    x.grad = None
    x.clamp(0.0, 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 0, 0], [1, 0, 1]])
    x.grad = None
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [0, 0, 0]])


def test_creation_functions():
    assert mc.zeros(2, 3).shape == (2, 3) and mc.zeros(2, 3).dtype == np.float32
    assert mc.ones((4,), dtype=np.float64).dtype == np.float64
    assert mc.full((2, 2), 7.0).numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert mc.arange(5).dtype == np.int64 and mc.arange(0.0, 1.0, 0.25).shape == (4,)
    mc.manual_seed(3)
    a = mc.randn(3, 4)
    mc.manual_seed(3)
    np.testing.assert_array_equal(mc.randn(3, 4).numpy(), a.numpy())       # the generator repeats
    r = mc.rand(1000)
    assert 0.0 <= r.numpy().min() and r.numpy().max() < 1.0
    assert mc.zeros(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative ints"):
        mc.zeros(2, -1)


def test_cat_and_stack_with_gradients():
    a, b = t(np.ones((2, 3))), t(np.ones((1, 3)))
    joined = mc.cat([a, b], axis=0)
    assert joined.shape == (3, 3) and joined.grad_fn.name == "Cat"
    (joined * t(np.arange(9.0).reshape(3, 3), grad=False)).sum().backward()
    np.testing.assert_array_equal(b.grad, [[6.0, 7.0, 8.0]])
    c, d = t(np.ones(3)), t(np.ones(3))
    s = mc.stack([c, d], axis=1)
    assert s.shape == (3, 2)
    assert mc.gradcheck(lambda c, d: mc.stack([c, d * 2.0], axis=0), [c, d])
    with pytest.raises(ValueError, match="tensor 1 has shape"):
        mc.stack([c, t(np.ones(2))])
    with pytest.raises(TypeError, match="item 0 must be a minicnn Tensor"):
        mc.cat([np.ones(2)])
