"""mc.onnx.load refuses broken graphs at load, naming the node: real broken ONNX files (a cycle, nodes
out of order, a missing initializer, an output nothing produces, a missing required attribute,
negative dimensions), and loads the awkward valid ones (initializers named like Module's methods,
a uint8 input read through a Cast)."""

import numpy as np
import pytest

import minicnn as mc
from minicnn.onnx import InvalidOnnxModel, UnsupportedOnnxModel

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model_of(nodes, initializers=(), input_shape=(1, 2), output_shape=("n", "m"), input_type=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, list(input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def saved(tmp_path, model):
    """The model written to a file as is (onnx.save does not check it): a real broken file."""
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_nodes_out_of_order_are_refused_naming_the_node(tmp_path):
    nodes = [helper.make_node("Relu", ["a"], ["y"], name="second"), helper.make_node("Neg", ["x"], ["a"], name="first")]
    with pytest.raises(InvalidOnnxModel, match=r"Relu \(node 'second'\) reads 'a' before node 'first' produces it: "
                                               r"the nodes are not in topological order$"):
        mc.onnx.load(saved(tmp_path, model_of(nodes)))


def test_a_cycle_is_refused_as_a_cycle(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="one"), helper.make_node("Relu", ["a"], ["b"], name="two"),
             helper.make_node("Neg", ["a"], ["y"], name="out")]
    with pytest.raises(InvalidOnnxModel, match=r"Add \(node 'one'\) reads 'b' before node 'two' produces it.*they form "
                                               r"a cycle"):
        mc.onnx.load(saved(tmp_path, model_of(nodes)))


def test_a_missing_initializer_and_an_unproduced_output_are_refused_at_load(tmp_path):
    gemm = helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="fc", transB=1)
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")      # the bias "B" is missing
    with pytest.raises(InvalidOnnxModel, match=r"Gemm \(node 'fc'\) reads 'B', which no node, initializer or graph "
                                               r"input produces"):
        mc.onnx.load(saved(tmp_path, model_of([gemm], [weight])))
    with pytest.raises(InvalidOnnxModel, match=r"graph output 'y' is produced by no node"):
        mc.onnx.load(saved(tmp_path, model_of([helper.make_node("Relu", ["x"], ["z"], name="r")])))


def test_a_missing_required_attribute_is_refused_naming_the_node(tmp_path):
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool1")                 # no kernel_shape
    with pytest.raises(InvalidOnnxModel, match=r"MaxPool \(node 'pool1'\) lacks its required attribute 'kernel_shape'"):
        mc.onnx.load(saved(tmp_path, model_of([pool], input_shape=(1, 1, 4, 4), output_shape=(1, 1, 3, 3))))


def test_negative_dimensions_are_refused(tmp_path):
    bad = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], input_shape=(1, -3))
    with pytest.raises(InvalidOnnxModel, match=r"graph input 'x' declares negative dimensions \[1, -3\]"):
        mc.onnx.load(saved(tmp_path, bad))
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], np.ones(4, np.float32))
    weight.dims[:] = [-2, -2]
    with pytest.raises(InvalidOnnxModel, match=r"initializer 'W' has negative dimensions \[-2, -2\]"):
        mc.onnx.load(saved(tmp_path, model_of([helper.make_node("MatMul", ["x", "W"], ["y"])], [weight])))
    shape = numpy_helper.from_array(np.array([-2, 1], np.int64), "shape")
    with pytest.raises(UnsupportedOnnxModel, match=r"Reshape \(node 'r'\): Reshape to \[-2, 1\]"):
        mc.onnx.load(saved(tmp_path, model_of([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [shape])))


def test_a_node_that_produces_a_name_twice_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")]
    with pytest.raises(InvalidOnnxModel, match=r"Neg \(node 'b'\) produces 'y', which exists already"):
        mc.onnx.load(saved(tmp_path, model_of(nodes)))


@pytest.mark.parametrize("clash", ["forward", "eval", "train", "state_dict", "nodes", "to", "training"])
@pytest.mark.parametrize("dotted", [False, True])
def test_initializers_named_like_module_attributes_do_not_break_the_module(tmp_path, clash, dotted):
    # a parameter named "forward", or a layer named "forward" holding "forward.weight"
    names = [f"{clash}.weight", f"{clash}.bias"] if dotted else [clash, "bias"]
    weight = numpy_helper.from_array(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), names[0])
    bias = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), names[1])
    model = model_of([helper.make_node("Gemm", ["x"] + names, ["y"], transB=1)], [weight, bias])
    net = mc.onnx.load(saved(tmp_path, model))
    x = np.array([[1.0, 1.0]], np.float32)
    np.testing.assert_allclose(net(x).numpy(), [[3.5, 6.5]])
    net.eval()                                              # the methods still work
    net.train()
    assert callable(net.forward)
    assert sorted(net.state_dict()) == ([f"{clash}_.bias", f"{clash}_.weight"] if dotted else ["bias", f"{clash}_"])
    net.load_state_dict({k: v * 0 for k, v in net.state_dict().items()})
    np.testing.assert_allclose(net(x).numpy(), [[0.0, 0.0]])


def test_a_uint8_input_read_only_by_a_cast_loads_and_other_types_are_refused(tmp_path):
    cast = helper.make_node("Cast", ["x"], ["f"], name="to_float", to=TensorProto.FLOAT)
    scale = numpy_helper.from_array(np.array(1 / 255, np.float32), "scale")
    model = model_of([cast, helper.make_node("Mul", ["f", "scale"], ["y"])], [scale], input_type=TensorProto.UINT8)
    net = mc.onnx.load(saved(tmp_path, model))
    out = net(np.array([[0, 255]], np.uint8)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 1.0]])
    relu = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], input_type=TensorProto.INT64)
    with pytest.raises(UnsupportedOnnxModel, match=r"graph input 'x' is INT64"):
        mc.onnx.load(saved(tmp_path, relu))


def test_cast_to_double_runs_in_float64(tmp_path):
    model = model_of([helper.make_node("Cast", ["x"], ["y"], name="c", to=TensorProto.DOUBLE)])
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    out = mc.onnx.load(saved(tmp_path, model))(np.array([[0.1, 2.0]], np.float32)).numpy()
    assert out.dtype == np.float64 and out[0, 0] == np.float64(np.float32(0.1))
