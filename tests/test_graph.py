"""mc.draw_graph: the nodes and arrows of a real network's graph, names, gradient norms, pictures."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F

# alexnet_small in training mode: 5 conv, 7 relu, 2 LRN, 3 max pool, flatten (a Reshape), 3 linear,
# 2 dropout and the loss; 16 parameters (a weight and a bias in each conv and linear layer)
OPS = {"Conv2d": 5, "ReLU": 7, "LocalResponseNorm": 2, "MaxPool2d": 3, "Reshape": 1, "Linear": 3,
       "Dropout": 2, "CrossEntropy": 1}


def step(model, train=True):
    model.train(train)
    x = mc.Tensor(np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32))
    return F.cross_entropy(model(x), np.array([1, 2]))


def labels(dot):
    return [line.split('label="')[1].split("\\n")[0] for line in dot.splitlines() if 'label="' in line]


def test_alexnet_small_graph_has_one_node_per_op_and_parameter():
    mc.manual_seed(0)
    model = mc.models.alexnet_small()
    dot = mc.draw_graph(step(model), model=model)
    names = labels(dot)
    assert {op: names.count(op) for op in OPS} == OPS
    assert sorted(n for n in names if n not in OPS) == sorted(name for name, _ in model.named_parameters())
    assert len(names) == sum(OPS.values()) + 16
    assert dot.count("->") == sum(OPS.values()) - 1 + 16      # a chain of ops, and one arrow per parameter
    assert "(2, 32, 28, 28)" in dot                            # conv1's output shape


def test_eval_mode_has_no_dropout_nodes_and_depth_collapses_layers():
    model = mc.models.alexnet_small()
    assert "Dropout" not in labels(mc.draw_graph(step(model, train=False), model=model))
    collapsed = labels(mc.draw_graph(step(model), model=model, depth=1))
    children = [name for name, _ in model.named_children()]
    assert collapsed[:-1] and sorted(collapsed) == sorted(children + ["CrossEntropy"])


def test_gradient_norms_after_backward():
    model = mc.models.alexnet_small()
    loss = step(model)
    mc.record_gradient_norms(loss)
    assert "|grad|" not in mc.draw_graph(loss, model=model)
    loss.backward()
    dot = mc.draw_graph(loss, model=model)
    norm = float(np.linalg.norm(model.conv1.weight.grad))
    assert f"conv1.weight\\n(32, 1, 5, 5)\\n|grad| {norm:.3g}" in dot
    assert dot.count("|grad|") == sum(OPS.values()) + 16      # every op and every parameter


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".dot", b"digraph")])
def test_pictures_are_written(tmp_path, suffix, magic):
    model = mc.models.alexnet_small()
    path = tmp_path / f"graph{suffix}"
    mc.draw_graph(step(model), path, model=model)
    assert path.read_bytes().startswith(magic)


def test_bad_arguments():
    with pytest.raises(ValueError, match="not computed by ops that record a graph"):
        mc.draw_graph(mc.Tensor(np.ones(2)))
    x = mc.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="must end in"):
        mc.draw_graph(x * 2.0, "graph.jpeg")
    with pytest.raises(ValueError, match="depth must be a positive int"):
        mc.draw_graph(x * 2.0, depth=0)
