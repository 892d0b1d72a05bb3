"""Module, Sequential, layers: registration, modes, state_dict round trips and their errors."""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        self.head = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.head(F.flatten(self.features(x)))


def test_parameters_are_registered_in_order_with_dotted_names():
    names = [n for n, _ in Tiny().named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "head.weight", "head.bias"]


def test_named_sequential_and_indexing():
    seq = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 2, 3), relu1=nn.ReLU()))
    assert [n for n, _ in seq.named_children()] == ["conv1", "relu1"]
    assert isinstance(seq["conv1"], nn.Conv2d) and isinstance(seq[1], nn.ReLU) and len(seq[:1]) == 1
    with pytest.raises(TypeError, match="must be a Module"):
        nn.Sequential(nn.ReLU(), "relu")


def test_train_eval_propagate_to_children():
    model = Tiny().eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip_and_errors():
    a, b = Tiny(), Tiny()
    state = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b.load_state_dict(state)
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state["head.weight"][0, 0] += 1.0
    assert a.head.weight.data[0, 0] != state["head.weight"][0, 0]  # state_dict holds copies

    missing = OrderedDict(state)
    del missing["head.bias"]
    with pytest.raises(KeyError, match="head.bias"):
        b.load_state_dict(missing)
    extra = OrderedDict(state, **{"head.scale": np.ones(3)})
    with pytest.raises(KeyError, match="head.scale"):
        b.load_state_dict(extra)
    wrong = OrderedDict(state)
    wrong["head.weight"] = np.ones((4, 32))
    with pytest.raises(ValueError, match=r"head.weight.*\(4, 32\)"):
        b.load_state_dict(wrong)


def test_requires_grad_freezes_and_zero_grad_clears():
    model = Tiny()
    x = mc.Tensor(np.ones((1, 1, 6, 6), dtype=np.float32))
    model.features.requires_grad_(False)
    F.cross_entropy(model(x), np.array([1])).backward()
    assert model.features[0].weight.grad is None and model.head.weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_layer_repr_and_argument_errors():
    assert "kernel_size=(3, 3)" in repr(nn.Conv2d(1, 2, 3))
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)


def test_module_list_and_dict_register_their_children_and_plain_lists_are_refused():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 1)})

    names = [n for n, _ in Stack().named_parameters()]
    assert names == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                     "heads.a.weight", "heads.a.bias"]

    class Forgetful(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2)]

    with pytest.raises(TypeError, match="ModuleList"):
        Forgetful()


def test_small_layers():
    x = mc.Tensor(np.array([[1.0, 2.0, 3.0]], np.float32))
    assert nn.Identity()(x) is x
    np.testing.assert_allclose(nn.Softmax()(x).numpy().sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(nn.CrossEntropyLoss()(x, np.array([2])).item(),
                               F.cross_entropy(x, np.array([2])).item())
    np.testing.assert_allclose(nn.BCEWithLogitsLoss()(x, np.ones((1, 3))).item(),
                               F.binary_cross_entropy_with_logits(x, np.ones((1, 3))).item())


@pytest.mark.parametrize("build, error, message", [
    (lambda: nn.Conv2d(3, 4, 3.0), TypeError, r"Conv2d: kernel_size must be an int or a pair of ints, got 3.0"),
    (lambda: nn.Conv2d(3, 4, 3, padding="bogus"), ValueError, r"Conv2d: padding must be an int, a pair, .*'bogus'"),
    (lambda: nn.Conv2d(3, 4, 3, padding=[1.5, 1]), TypeError, r"Conv2d: padding must be an int, a pair"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, r"Conv2d: stride must be >= 1"),
    (lambda: nn.Conv2d(3.0, 4, 3), ValueError, r"Conv2d: in_channels must be a positive int"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, r"MaxPool2d: padding .*\(2, 2, 2, 2\) must be smaller than the kernel"),
    (lambda: nn.AvgPool2d((2, 2, 2)), TypeError, r"AvgPool2d: kernel_size"),
    (lambda: nn.LocalResponseNorm(size=4), ValueError, r"LocalResponseNorm: size must be a positive odd int"),
    (lambda: nn.LocalResponseNorm(k="2"), TypeError, r"LocalResponseNorm: k must be a number"),
    (lambda: nn.Dropout("0.5"), TypeError, r"Dropout: p must be a number"),
    (lambda: nn.LeakyReLU(None), TypeError, r"LeakyReLU: negative_slope must be a number"),
])
def test_layers_check_their_arguments_when_built(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_buffers_are_saved_loaded_and_cast_with_the_parameters():
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)
            self.register_buffer("running", np.zeros(2, np.float32))
            self.register_buffer("count", np.zeros((), np.int64))

    model = WithBuffer()
    assert list(model.state_dict()) == ["layer.weight", "layer.bias", "running", "count"]
    model.running = np.array([1.0, 2.0], np.float32)          # assigning to a buffer updates it
    state = model.state_dict()
    other = WithBuffer()
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.running.numpy(), [1.0, 2.0])
    other.double()
    assert other.running.dtype == np.float64 and other.count.dtype == np.int64 and other.layer.weight.dtype == np.float64
    with pytest.raises(TypeError, match="floating point"):
        other.to(np.int32)
