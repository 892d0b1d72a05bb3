"""The autograd engine: graph nodes, freed graphs, retain_graph, retain_grad, hooks, versions,
and, where PyTorch is installed, the same computations compared with torch.autograd."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn.autograd import AccumulateGrad, Function


def t(values, grad=True):
    return mc.Tensor(np.asarray(values, dtype=np.float64), requires_grad=grad)


# --------------------------------------------------------------------------- freed graphs and retain_graph
def test_second_backward_through_a_freed_graph_raises_and_retain_graph_accumulates():
    w = mc.Tensor(np.ones(3, np.float32), requires_grad=True)
    h = w * 3.0
    h.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        (h * h).sum().backward()          # h's node was freed by the first backward

    w.grad = None
    h = w * 3.0
    h.sum().backward(retain_graph=True)
    (h * h).sum().backward()
    np.testing.assert_allclose(w.grad, [21.0, 21.0, 21.0])   # 3 + 2 * 3w * 3


def test_backward_twice_on_the_same_loss():
    x = t([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_a_freed_graph_keeps_its_structure_for_drawings():
    x = t([1.0, 2.0])
    y = (x * 2.0).exp()
    y.sum().backward()
    assert y.grad_fn.name == "Exp" and y.grad_fn.next_functions[0].name == "Mul"


# --------------------------------------------------------------------------- the graph
def test_leaves_have_no_grad_fn_and_outputs_name_their_op():
    model = mc.nn.Sequential(mc.nn.Linear(3, 2), mc.nn.ReLU())
    x = mc.Tensor(np.ones((4, 3), np.float32))
    assert x.grad_fn is None and x.is_leaf and model[0].weight.grad_fn is None
    y = model(x)
    assert y.grad_fn.name == "ReLU" and not y.is_leaf
    linear = y.grad_fn.next_functions[0]
    assert linear.name == "Linear" and linear.output_shape == (4, 2)
    x_node, w_node, b_node = linear.next_functions
    assert x_node is None                                   # x needs no gradient
    assert isinstance(w_node, AccumulateGrad) and w_node.variable is model[0].weight
    assert b_node.variable is model[0].bias
    assert model[0].weight._gradient_node() is w_node        # one accumulator per leaf


def test_topological_order_a_node_used_twice_runs_once_after_both_users():
    x = t([1.5])
    a = x * 2.0
    b = a * a
    c = a + b
    c.sum().backward()               # c = 2x + 4x^2
    np.testing.assert_allclose(x.grad, [2 + 8 * 1.5])


def test_a_deep_graph_needs_no_recursion():
    x = t([1.0])
    y = x
    for _ in range(3000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 3000], rtol=1e-10)


# --------------------------------------------------------------------------- grad mode
def test_nested_no_grad_restores_the_outer_setting():
    x = t([1.0])
    with mc.no_grad():
        with mc.no_grad():
            pass
        y = x * 2.0                 # still inside the outer block: no graph
        assert not mc.is_grad_enabled()
        with mc.enable_grad():
            z = x * 2.0
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None
    assert mc.is_grad_enabled()



def test_an_exception_inside_no_grad_and_enable_grad_restores_grad_mode():
    x = t([1.0])
    with pytest.raises(ZeroDivisionError):
        with mc.no_grad():
            assert not mc.is_grad_enabled()
            1 / 0
    assert mc.is_grad_enabled()
    assert (x * 2.0).grad_fn is not None          # the graph is recorded again
    with mc.no_grad():
        with pytest.raises(KeyError):
            with mc.enable_grad():
                {}["missing"]
        assert not mc.is_grad_enabled()           # back to the outer no_grad, not to "on"
    assert mc.is_grad_enabled()

# --------------------------------------------------------------------------- retain_grad and hooks
def test_retain_grad_keeps_a_non_leaf_gradient():
    x = t([1.0, 2.0])
    h = x * 3.0
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, [6.0, 12.0])
    np.testing.assert_allclose(x.grad, [18.0, 36.0])
    g = x * 2.0
    (g * g).sum().backward()
    assert g.grad is None                       # not retained


def test_tensor_hooks_see_and_replace_gradients_and_can_be_removed():
    x = t([1.0, 2.0])
    h = x * 3.0
    seen = []
    handle = h.register_hook(lambda g: seen.append(g.copy()))
    h.register_hook(lambda g: g * 10.0)          # replaces h's gradient
    x.register_hook(lambda g: g + 1.0)           # a leaf's hook runs before accumulation
    h.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad, [31.0, 31.0])
    handle.remove()
    x.grad = None
    h2 = x * 3.0
    h2.sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(x.grad, [4.0, 4.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        mc.Tensor(np.ones(2)).register_hook(lambda g: g)


# --------------------------------------------------------------------------- arrays changed after they were saved
def test_backward_after_an_optimizer_step_raises():
    layer = mc.nn.Linear(3, 2)
    x = mc.Tensor(np.ones((1, 3), np.float32))
    opt = mc.optim.SGD(layer.parameters(), lr=0.1)
    loss = layer(x * 2.0).sum()
    loss.backward(retain_graph=True)
    opt.step()                                   # changes layer.weight in place
    with pytest.raises(RuntimeError, match="modified after the forward"):
        loss.backward()


def test_replacing_data_after_forward_raises():
    w = t([1.0, 2.0])
    y = (w * w).sum()
    w.data = np.array([5.0, 5.0])
    with pytest.raises(RuntimeError, match="modified"):
        y.backward()


# --------------------------------------------------------------------------- writing a Function
class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2        # d x^3/dx = 3 x^2


def test_a_user_function_works_and_gradchecks():
    x = t(np.random.default_rng(0).standard_normal(5))
    assert Cube.apply(x).grad_fn.name == "Cube"
    assert mc.gradcheck(Cube.apply, [x])


def test_a_backward_with_the_wrong_count_or_shape_is_named():
    class TooMany(Cube):
        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    class WrongShape(Cube):
        @staticmethod
        def backward(ctx, grad):
            return grad[:1]

    with pytest.raises(RuntimeError, match="TooMany.backward returned 2 gradients"):
        TooMany.apply(t([1.0, 2.0])).sum().backward()
    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(1,\)"):
        WrongShape.apply(t([1.0, 2.0])).sum().backward()


# --------------------------------------------------------------------------- module hooks
def test_module_forward_hooks_change_inputs_and_outputs_and_can_be_removed():
    layer = mc.nn.Linear(2, 2)
    x = mc.Tensor(np.ones((1, 2), np.float32))
    plain = layer(x).numpy()
    calls = []
    pre = layer.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 0.0,))
    post = layer.register_forward_hook(lambda m, inputs, out: calls.append(out.shape) or out * 2.0)
    np.testing.assert_allclose(layer(x).numpy(), 2 * layer.bias.numpy()[None])
    assert calls == [(1, 2)]
    pre.remove()
    post.remove()
    np.testing.assert_allclose(layer(x).numpy(), plain)


def test_full_backward_hook_gives_grad_input_and_grad_output():
    rng = np.random.default_rng(1)
    layer = mc.nn.Linear(3, 2).double()
    x = t(rng.standard_normal((4, 3)))
    seen = {}
    handle = layer.register_full_backward_hook(
        lambda m, gin, gout: seen.update(module=m, gin=gin, gout=gout))
    weights = rng.standard_normal((4, 2))
    layer(x).backward(weights)
    assert seen["module"] is layer
    np.testing.assert_allclose(seen["gout"][0], weights)
    np.testing.assert_allclose(seen["gin"][0], weights @ layer.weight.numpy())
    np.testing.assert_allclose(x.grad, seen["gin"][0])
    handle.remove()
    seen.clear()
    layer(x).backward(weights)
    assert not seen


def test_full_backward_hook_may_replace_grad_input_and_fires_without_input_grads():
    layer = mc.nn.ReLU()
    x = t([1.0, -1.0, 2.0])
    layer.register_full_backward_hook(lambda m, gin, gout: (gin[0] * 0.5,))
    layer(x).sum().backward()
    np.testing.assert_allclose(x.grad, [0.5, 0.0, 0.5])
    lin = mc.nn.Linear(3, 1).double()
    fired = []
    lin.register_full_backward_hook(lambda m, gin, gout: fired.append(gin))
    lin(t(np.ones((1, 3)), grad=False)).sum().backward()
    assert fired == [(None,)]


# --------------------------------------------------------------------------- a whole network in float64
def test_gradcheck_of_every_parameter_of_alexnet_small_in_float64():
    mc.manual_seed(0)
    model = mc.models.alexnet_small().double().eval()       # eval: dropout is the identity
    assert all(p.dtype == np.float64 for p in model.parameters())
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 1, 28, 28)))
    labels = np.array([3, 7])
    assert mc.gradcheck(lambda *params: F.cross_entropy(model(x), labels), model.parameters(), samples=12)


def test_gradcheck_catches_a_wrong_gradient_among_sampled_entries():
    class Wrong(Cube):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x ** 2
    with pytest.raises(AssertionError, match="gradcheck: input 0"):
        mc.gradcheck(Wrong.apply, [t(np.linspace(0.5, 2.0, 50))], samples=5)


# --------------------------------------------------------------------------- against PyTorch
torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


def both(array):
    return t(array), torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def test_shared_subgraphs_and_a_tensor_used_many_times_match_torch():
    rng = np.random.default_rng(2)
    (a, ta), (b, tb) = both(rng.standard_normal((3, 4))), both(rng.standard_normal((4,)))
    shared, tshared = a * b, ta * tb
    out = (shared.exp() + shared * shared - shared / (b * b + 1.0)).sum() + (a * a * a).mean()
    tout = (tshared.exp() + tshared * tshared - tshared / (tb * tb + 1.0)).sum() + (ta * ta * ta).mean()
    out.backward()
    tout.backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-12)


def test_broadcasting_gradients_match_torch():
    rng = np.random.default_rng(3)
    (a, ta), (row, trow), (col, tcol) = both(rng.standard_normal((3, 4))), both(rng.standard_normal((1, 4))), \
        both(rng.standard_normal((3, 1)))
    ((a + row) * col - row / 2.0).sum().backward()
    ((ta + trow) * tcol - trow / 2.0).sum().backward()
    for ours, theirs in ((a, ta), (row, trow), (col, tcol)):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)


def test_second_backward_retain_grad_and_hooks_match_torch():
    (x, tx) = both([1.0, 2.0, 3.0])
    h, th = x * x, tx * tx
    h.retain_grad()
    th.retain_grad()
    h.register_hook(lambda g: g * 2.0)
    th.register_hook(lambda g: g * 2.0)
    (h * 3.0).sum().backward(retain_graph=True)
    (th * 3.0).sum().backward(retain_graph=True)
    (h.sum() * 1.0).backward()
    (th.sum() * 1.0).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy())
    np.testing.assert_allclose(h.grad, th.grad.numpy())
    with pytest.raises(RuntimeError, match="second time"):
        (h * 3.0).sum().backward()          # the last backward freed h's graph
    with pytest.raises(RuntimeError):
        (th * 3.0).sum().backward()
    (h2, th2) = x * x, tx * tx
    (h2 * h2).sum().backward()
    (th2 * th2).sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h2 * h2).sum().backward()       # h2's Mul saved x: freed, as in torch
    with pytest.raises(RuntimeError):
        (th2 * th2).sum().backward()


def test_module_full_backward_hook_matches_torch():
    rng = np.random.default_rng(4)
    weight, bias, inputs = rng.standard_normal((2, 3)), rng.standard_normal(2), rng.standard_normal((5, 3))
    ours = mc.nn.Linear(3, 2).double()
    ours.load_state_dict({"weight": weight, "bias": bias})
    theirs = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(weight))
        theirs.bias.copy_(torch.tensor(bias))
    got, expected = {}, {}
    ours.register_full_backward_hook(lambda m, gin, gout: got.update(gin=gin[0], gout=gout[0]))
    theirs.register_full_backward_hook(lambda m, gin, gout: expected.update(gin=gin[0], gout=gout[0]))
    x, tx = both(inputs)
    F.relu(ours(x)).sum().backward()
    torch.relu(theirs(tx)).sum().backward()
    np.testing.assert_allclose(got["gout"], expected["gout"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["gin"], expected["gin"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12)


def test_in_place_change_of_a_saved_input_raises_in_both():
    (w, tw) = both([1.0, 2.0])
    y, ty = (w * w).sum(), (tw * tw).sum()
    w.data = w.data * 2.0                  # replacing .data bumps minicnn's version counter
    with torch.no_grad():
        tw.mul_(2.0)                       # an in-place op bumps torch's
    with pytest.raises(RuntimeError, match="modified"):
        y.backward()
    with pytest.raises(RuntimeError, match="modified"):
        ty.backward()
