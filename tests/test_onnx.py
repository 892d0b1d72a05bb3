"""ONNX export (checked by onnx.checker and run by ONNX Runtime), import (from minicnn's and PyTorch's
exporters), and DLPack exchange."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'minicnn[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'minicnn[onnx]')")


def run_onnxruntime(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def logits(model, x):
    with mc.no_grad():
        return model(mc.Tensor(x)).numpy()


def tolerance(reference):
    # float32 sums in another order: relative to the largest logit, a few ulps per accumulated product
    return dict(rtol=0, atol=1e-5 * max(1.0, float(np.abs(reference).max())))


ZOO = [
    ("alexnet_small", lambda: mc.models.alexnet_small(), (2, 1, 28, 28)),
    ("alexnet", lambda: mc.models.alexnet(num_classes=20), (2, 3, 227, 227)),
    ("vgg16 at 32x32", lambda: mc.models.vgg16(num_classes=10), (2, 3, 32, 32)),
    ("alexnet_torchvision", lambda: mc.models.alexnet_torchvision(num_classes=7), (2, 3, 224, 224)),
    ("resnet18 at 64x64", lambda: trained_statistics(mc.models.resnet18(num_classes=6)), (2, 3, 64, 64)),
    ("vgg16_bn at 32x32", lambda: trained_statistics(mc.models.vgg16_bn(num_classes=5)), (2, 3, 32, 32)),
]


def trained_statistics(model):
    """BatchNorm's running statistics moved off their start (mean 0, var 1), so the export must carry them."""
    rng = np.random.default_rng(5)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.data = rng.standard_normal(buffer.shape).astype(np.float32) * 0.1
        elif name.endswith("running_var"):
            buffer.data = rng.uniform(0.5, 2.0, buffer.shape).astype(np.float32)
    return model


@pytest.mark.parametrize("name, build, shape", ZOO, ids=[z[0] for z in ZOO])
def test_every_zoo_model_exports_runs_in_onnxruntime_and_round_trips(tmp_path, name, build, shape):
    mc.manual_seed(0)
    model = build().eval()
    path = tmp_path / "model.onnx"
    proto = mc.onnx.export(model, np.zeros(shape, np.float32), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    initializers = {t.name for t in proto.graph.initializer}
    # the state_dict's names (num_batches_tracked only moves momentum=None's average: not part of inference)
    assert {k for k in model.state_dict() if not k.endswith("num_batches_tracked")} <= initializers
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(1).standard_normal((3,) + shape[1:]).astype(np.float32)   # another batch size
    expected = logits(model, x)
    np.testing.assert_allclose(run_onnxruntime(path, x), expected, **tolerance(expected))
    back = mc.onnx.load(path)
    np.testing.assert_allclose(logits(back, x), expected, **tolerance(expected))
    assert sorted(k for k in back.state_dict() if not k.endswith("num_batches_tracked")) == \
        sorted(k for k in model.state_dict() if not k.endswith("num_batches_tracked"))


def test_pooling_options_export(tmp_path):
    model = mc.nn.Sequential(mc.nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                             mc.nn.AvgPool2d(2, 2, padding=(0, 1, 1, 0), ceil_mode=True, count_include_pad=False),
                             mc.nn.Flatten())
    x = np.random.default_rng(4).standard_normal((2, 3, 10, 9)).astype(np.float32)
    mc.onnx.export(model, x, tmp_path / "pool.onnx")
    expected = logits(model, x)
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "pool.onnx", x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits(mc.onnx.load(tmp_path / "pool.onnx"), x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("divide_alpha_by_size", [False, True])
def test_lrn_alpha_is_converted_to_onnx_convention(tmp_path, divide_alpha_by_size):
    # alpha near 1 makes the paper's and Caffe's conventions differ by far more than rounding
    model = mc.nn.Sequential(mc.nn.LocalResponseNorm(5, alpha=0.8, beta=0.75, k=1.5,
                                                     divide_alpha_by_size=divide_alpha_by_size), mc.nn.Flatten())
    x = np.random.default_rng(2).standard_normal((2, 7, 3, 3)).astype(np.float32) * 2
    mc.onnx.export(model, x, tmp_path / "lrn.onnx")
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "lrn.onnx", x), logits(model, x), rtol=1e-5, atol=1e-6)
    lrn = [n for n in onnx.load(str(tmp_path / "lrn.onnx")).graph.node if n.op_type == "LRN"][0]
    alpha = [a.f for a in lrn.attribute if a.name == "alpha"][0]
    assert alpha == pytest.approx(0.8 if divide_alpha_by_size else 0.8 * 5)


class Branches(mc.nn.Module):
    """Not a Sequential: two branches, constants, concatenation and softmax."""

    def __init__(self):
        super().__init__()
        self.left = mc.nn.Conv2d(3, 4, 3, padding=1)
        self.right = mc.nn.Conv2d(3, 4, 1)
        self.head = mc.nn.Linear(8, 5)

    def forward(self, x):
        joined = mc.cat([F.relu(self.left(x)) * 2.0, F.sigmoid(self.right(x)) - 0.5], axis=1)
        return F.log_softmax(self.head(F.global_avg_pool2d(joined)), axis=1)


def test_any_module_exports_not_only_sequential(tmp_path):
    model = Branches()
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    proto = mc.onnx.export(model, x, tmp_path / "branches.onnx")
    assert {"Concat", "GlobalAveragePool", "LogSoftmax", "Mul", "Sub", "Sigmoid"} <= {n.op_type for n in proto.graph.node}
    expected = logits(model, x)
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "branches.onnx", x), expected, rtol=1e-5, atol=1e-6)
    back = mc.onnx.load(tmp_path / "branches.onnx")
    np.testing.assert_allclose(logits(back, x), expected, rtol=1e-5, atol=1e-6)
    assert sorted(back.state_dict()) == sorted(model.state_dict())      # constants are not parameters


def test_an_op_without_mapping_is_named_with_its_layer():
    class Slicer(mc.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = mc.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x)[:, :1]

    with pytest.raises(NotImplementedError, match=r"GetItem in the model's forward"):
        mc.onnx.to_onnx(Slicer(), np.zeros((1, 1, 5, 5), np.float32))


def test_imported_model_trains_with_minicnn_autograd(tmp_path):
    model = mc.models.alexnet_small()
    mc.onnx.export(model, np.zeros((2, 1, 28, 28), np.float32), tmp_path / "m.onnx")
    back = mc.onnx.load(tmp_path / "m.onnx")
    loss = F.cross_entropy(back(mc.Tensor(np.ones((2, 1, 28, 28), np.float32))), np.array([1, 2]))
    loss.backward()
    assert back.conv1.weight.grad.shape == (32, 1, 5, 5)


def test_conv_with_dilation_asymmetric_and_same_padding_exports(tmp_path):
    mc.manual_seed(2)
    model = mc.nn.Sequential(mc.nn.Conv2d(3, 4, 3, dilation=2, padding=(1, 2, 0, 1)), mc.nn.ReLU(),
                             mc.nn.Conv2d(4, 6, 4, padding="same", groups=2),     # even kernel: one more pixel at the end
                             mc.nn.Conv2d(6, 2, 3, stride=2, dilation=(1, 2)), mc.nn.Flatten())
    x = np.random.default_rng(6).standard_normal((2, 3, 11, 12)).astype(np.float32)
    proto = mc.onnx.export(model, x, tmp_path / "conv.onnx")
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in convs]
    assert [a["pads"] for a in attributes] == [[1, 0, 2, 1], [1, 1, 2, 2], [0, 0, 0, 0]]    # top, left, bottom, right
    assert [a["dilations"] for a in attributes] == [[2, 2], [1, 1], [1, 2]]
    expected = logits(model, x)
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "conv.onnx", x), expected, **tolerance(expected))
    np.testing.assert_allclose(logits(mc.onnx.load(tmp_path / "conv.onnx"), x), expected, **tolerance(expected))


def graph_of(nodes, input_shape, initializers=()):
    """A one-input ONNX model around nodes (output 'output', 4-D, its sizes left symbolic: onnx.checker,
    which mc.onnx.load runs, wants a graph output's shape field, not its sizes)."""
    from onnx import TensorProto, helper
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", "c", "h", "w"])],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_and_onnx_default_strides_load_as_onnxruntime_runs_them(tmp_path, auto_pad):
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(7)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 4, 3)).astype(np.float32), "w")
    dilations = [1, 2] if auto_pad == "VALID" else [1, 1]          # ONNX Runtime refuses dilated SAME
    nodes = [helper.make_node("Conv", ["input", "w"], ["a"], auto_pad=auto_pad, strides=[2, 3], dilations=dilations),
             helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[2, 2], auto_pad=auto_pad),   # stride 1
             helper.make_node("AveragePool", ["b"], ["output"], kernel_shape=[3, 2], strides=[1, 2])]
    model = graph_of(nodes, [2, 3, 13, 17], [weight])
    onnx.save(model, str(tmp_path / "auto_pad.onnx"))
    x = rng.standard_normal((2, 3, 13, 17)).astype(np.float32)
    expected = run_onnxruntime(tmp_path / "auto_pad.onnx", x)
    np.testing.assert_allclose(logits(mc.onnx.load(model), x), expected, rtol=1e-5, atol=1e-5)


def test_pooling_with_dilations_is_refused_by_name():
    from onnx import helper
    model = graph_of([helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[2, 2], dilations=[2, 2])],
                     [1, 1, 6, 6])
    with pytest.raises(NotImplementedError, match=r"pooling with dilations \(2, 2\)"):
        logits(mc.onnx.load(model), np.zeros((1, 1, 6, 6), np.float32))


def test_unsupported_onnx_nodes_are_listed_at_once(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", ["input"], ["a"], name="fine"),
             helper.make_node("Resize", ["a", "", "scales"], ["b"], name="upsample"),
             helper.make_node("Erf", ["b"], ["output"], name="gelu_part")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 4, 4])],
                              initializer=[helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])])
    with pytest.raises(NotImplementedError, match=r"unsupported op Resize in node 'upsample'; unsupported op Erf in "
                                                  r"node 'gelu_part'"):
        mc.onnx.load(helper.make_model(graph))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # torch's TorchScript exporter, kept for its ops
def test_a_model_exported_by_pytorch_loads():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(4, 6, 3, padding=1, groups=2), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2),
        torch.nn.Conv2d(6, 8, 3, stride=2), torch.nn.LeakyReLU(0.1), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 5), torch.nn.Tanh())
    with torch.no_grad():                   # BatchNorm statistics away from their start
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(2, 4, 15, 15)
    import io
    buffer = io.BytesIO()
    # without constant folding torch keeps BatchNorm as its own node instead of folding it into the conv
    torch.onnx.export(net, (x,), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, do_constant_folding=False)
    proto = onnx.load_from_string(buffer.getvalue())
    assert "BatchNormalization" in {n.op_type for n in proto.graph.node}
    model = mc.onnx.load(proto)
    state = model.state_dict()
    assert "0.weight" in state and "1.running_var" in state
    assert "1.running_var" not in dict(model.named_parameters())      # statistics are buffers
    batch = torch.randn(3, 4, 15, 15)
    with torch.no_grad():
        expected = net(batch).numpy()
    np.testing.assert_allclose(logits(model, batch.numpy()), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- DLPack
def test_dlpack_shares_memory_with_torch_both_ways():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    source = torch.arange(6, dtype=torch.float32)
    ours = mc.from_dlpack(source)
    ours.data[0] = 42.0                      # a change through minicnn ...
    assert source[0].item() == 42.0          # ... is seen by torch
    theirs = torch.from_dlpack(ours)
    theirs[1] = -1.0
    assert ours.data[1] == -1.0
    assert ours.__dlpack_device__() == (1, 0)
    with pytest.raises(TypeError, match="does not support the DLPack protocol"):
        mc.from_dlpack([1.0, 2.0])


@pytest.mark.gpu
def test_dlpack_on_the_gpu_with_cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    source = cupy.arange(4, dtype=cupy.float32)
    ours = mc.from_dlpack(source)
    assert ours.device == "cuda"
    ours.data[0] = 7.0
    assert float(source[0]) == 7.0
    back = cupy.from_dlpack(ours)
    back[2] = -3.0
    assert float(ours.data[2]) == -3.0
