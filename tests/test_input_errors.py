"""An input that does not fit a model: the error names the layer that refused it and the input size
that fits, and says "channels-first" to a channels-last batch (nn/input_errors.py, ops/checks.py)."""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import nn


def test_alexnet_on_160x160_images_names_fc6_and_227x227():
    model = mc.models.alexnet(5)
    with pytest.raises(ValueError) as caught:
        model(mc.Tensor(np.zeros((2, 3, 160, 160), np.float32)))
    message = str(caught.value)
    assert message.startswith("linear: weight expects 9216 input features, input has 2304")
    assert "; in layer fc6 (Linear), given an input of 3x160x160;" in message and "\n" not in message
    assert "the input size that fits: 3x227x227 (square sides from 227 to 258 fit)" in message
    for side in (227, 258):                               # what it says is true ...
        assert model.eval()(mc.Tensor(np.zeros((1, 3, side, side), np.float32))).shape == (1, 5)
    for side in (226, 259):                               # ... and the range is exact
        with pytest.raises(ValueError):
            model(mc.Tensor(np.zeros((1, 3, side, side), np.float32)))


def test_too_small_an_image_names_the_window_and_the_size_that_fits():
    model = mc.models.alexnet_small(10)                   # made for 28x28 digits
    with pytest.raises(ValueError, match=r"(?s)larger than the padded input.*; in layer pool\d \(MaxPool2d\), given an "
                                         r"input of 1x8x8; the input size that fits: 1x23x23 "
                                         r"\(square sides from 23 to 30 fit\)"):
        model(mc.Tensor(np.zeros((1, 1, 8, 8), np.float32)))


def test_a_channels_last_batch_is_told_minicnn_is_channels_first():
    model = mc.models.alexnet(5)
    with pytest.raises(ValueError, match=r"(?s)input has 160; minicnn is channels-first \(N, C, H, W\).*"
                                         r"x\.transpose\(0, 3, 1, 2\).*; in layer conv1 \(Conv2d\)") as caught:
        model(mc.Tensor(np.zeros((2, 160, 160, 3), np.float32)))
    assert "fits" not in str(caught.value)                # no size makes 160 channels fit
    with pytest.raises(ValueError, match="minicnn is channels-first"):   # the functional op says it too
        F.conv2d(mc.Tensor(np.zeros((1, 8, 8, 3))), mc.Tensor(np.zeros((4, 3, 3, 3))))
    with pytest.raises(ValueError) as caught:            # an input whose last axis is not the channels
        model(mc.Tensor(np.zeros((2, 5, 160, 160), np.float32)))
    assert "channels-first" not in str(caught.value)


def test_probing_leaves_the_model_as_it_was():
    mc.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), bn=nn.BatchNorm2d(2), flatten=nn.Flatten(),
                                      fc=nn.Linear(2 * 6 * 6, 3)))
    model.train()
    calls = []
    model.fc.register_forward_hook(lambda *a: calls.append("hook"))
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 1, 10, 10)).astype(np.float32))
    with pytest.raises(ValueError, match=r"the input size that fits: 1x8x8$"):
        model(x)
    assert calls == [] and model.training and model.bn.training
    assert int(model.bn.num_batches_tracked.data) == 1      # the failed call's own batch; no probe's


def test_models_that_take_no_images_still_name_the_layer():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), fc2=nn.Linear(5, 2)))
    with pytest.raises(ValueError, match=r"expects 5 input features, input has 3; in layer fc2 \(Linear\), given "
                                         r"an input of 4$"):
        model(mc.Tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"expects 4 input features, input has 3$"):   # a lone layer: nothing to add
        nn.Linear(4, 3)(mc.Tensor(np.zeros((2, 3), np.float32)))
