"""AlexNet as the paper describes it: sizes, parameters, initialisation, a CPU forward and backward."""

import numpy as np

import minicnn as mc
import minicnn.functional as F

EXPECTED_SHAPES = {
    "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
    "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}


def test_alexnet_summary_has_the_papers_sizes_and_parameter_count():
    model = mc.models.alexnet()
    summary = mc.summary(model, (3, 227, 227))
    shapes = {name: shape for name, _, shape, _, _, _ in summary.rows}
    for name, shape in EXPECTED_SHAPES.items():
        assert shapes[name] == shape, name
    assert summary.total_params == 60_965_224
    assert sum(p.numel() for p in model.parameters()) == 60_965_224
    text = str(summary)
    assert "96x55x55" in text and "60,965,224" in text
    conv1 = next(r for r in summary.rows if r[0] == "conv1")
    assert conv1[4] == 55 * 55 * 96 * 3 * 11 * 11 and conv1[5] == 290_400  # multiply-adds, neurons


def test_alexnet_children_names_and_paper_init():
    model = mc.models.alexnet(num_classes=10)
    names = [n for n, _ in model.named_children()]
    assert names[:4] == ["conv1", "relu1", "norm1", "pool1"] and names[-1] == "fc8"
    assert list(model.state_dict())[:2] == ["conv1.weight", "conv1.bias"]
    assert model.conv2.groups == 2 and model.conv4.groups == 2 and model.conv5.groups == 2
    assert model.conv3.groups == 1
    for layer in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        assert np.all(getattr(model, layer).bias.data == 1.0), layer
    for layer in ("conv1", "conv3", "fc8"):
        assert np.all(getattr(model, layer).bias.data == 0.0), layer
    assert abs(model.fc6.weight.data.std() - 0.01) < 1e-3
    assert "fc6" not in dict(mc.models.alexnet(include_top=False).named_children())


def test_alexnet_forward_and_backward_on_one_image_on_the_cpu():
    mc.manual_seed(0)
    model = mc.models.alexnet()
    x = mc.Tensor(np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (1, 1000)
    loss = F.cross_entropy(logits, np.array([7]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and np.isfinite(p.grad).all(), name
    assert np.abs(model.conv1.weight.grad).sum() > 0


def test_small_alexnet_on_28_and_32_pixel_inputs():
    for size, channels in ((28, 1), (32, 3)):
        model = mc.models.alexnet_small(num_classes=10, in_channels=channels, input_size=size)
        x = mc.Tensor(np.zeros((2, channels, size, size), dtype=np.float32))
        assert model(x).shape == (2, 10)
        kinds = {type(m).__name__ for m in model.modules()}
        assert {"ReLU", "LocalResponseNorm", "MaxPool2d", "Dropout"} <= kinds
