"""VGG16 (Simonyan and Zisserman, 2015, configuration "D") in torchvision's layout, and
vgg16_bn, the same with a batch normalization after every convolution.

The layers are the ones torchvision builds, in the same order and with the same
shapes, so torchvision's pretrained weights load into it (minicnn.weights maps
their names ``features.0.weight`` ... ``classifier.6.bias`` to ours). Our
children carry readable names, as in Caffe's VGG16 model:
conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 ... pool5 (vgg16_bn: conv1_1 bn1_1
relu1_1 ...), then with the top avgpool flatten fc6 relu6 drop6 fc7 relu7 drop7 fc8.
"""

from collections import OrderedDict

import numpy as np

from .. import nn
from .. import random as _random
from ..nn import init

# torchvision's cfg "D": a number is a 3x3 pad-1 convolution with that many output
# channels (followed by a ReLU), "M" a 2x2 stride-2 max pooling.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _torchvision_init(model):
    """torchvision's initialisation of VGG: conv weights ~ N(0, 2 / (out_channels * kH * kW))
    (Kaiming, fan-out, so ReLU activations keep their scale through 13 layers),
    dense weights ~ N(0, 0.01), biases 0; BatchNorm's weight 1 and bias 0 (as built)."""
    rng = _random.generator()      # float32 draws: VGG16 has 138M weights
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            init.kaiming_normal_fan_out(layer.weight)
        elif isinstance(layer, nn.Linear):
            layer.weight.data = np.float32(0.01) * rng.standard_normal(layer.weight.shape, dtype=np.float32)
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is not None:
            layer.bias.data = np.zeros(layer.bias.shape, dtype=np.float32)


def _vgg16_layers(batch_norm=False):
    """Our (name, layer) pairs of the feature extractor and, in step, torchvision's index of each
    in ``features``: [(torchvision_index, our_name, layer), ...]."""
    layers, index, in_channels = [], 0, 3
    block, conv_in_block = 1, 0
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append((index, f"pool{block}", nn.MaxPool2d(2, 2)))
            index += 1
            block, conv_in_block = block + 1, 0
        else:
            conv_in_block += 1
            suffix = f"{block}_{conv_in_block}"
            layers.append((index, f"conv{suffix}", nn.Conv2d(in_channels, item, 3, padding=1)))
            index += 1
            if batch_norm:
                layers.append((index, f"bn{suffix}", nn.BatchNorm2d(item)))
                index += 1
            layers.append((index, f"relu{suffix}", nn.ReLU()))
            index += 1
            in_channels = item
    return layers


def _vgg16(name, num_classes, include_top, batch_norm):
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
    layers = [(layer_name, layer) for _, layer_name, layer in _vgg16_layers(batch_norm)]
    if include_top:
        layers += [
            ("avgpool", nn.AdaptiveAvgPool2d(7)), ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(512 * 7 * 7, 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.5)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.5)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]
    model = nn.Sequential(OrderedDict(layers))
    _torchvision_init(model)
    return model


def vgg16(num_classes=1000, include_top=True):
    """VGG16 on 3x224x224 inputs (138,357,544 parameters for 1000 classes).

    include_top=False gives the convolutional feature extractor alone (conv1_1 ... pool5,
    512x7x7 per 224x224 image; any input of at least 32x32 works). With the top, an
    adaptive average pooling to 7x7 (identity at 224x224) feeds fc6 4096, fc7 4096 and
    fc8 num_classes, with dropout 0.5 after fc6 and fc7, as torchvision.
    """
    return _vgg16("vgg16", num_classes, include_top, batch_norm=False)


def vgg16_bn(num_classes=1000, include_top=True):
    """VGG16 with batch normalization (torchvision's vgg16_bn, 138,365,992 parameters for 1000
    classes): a BatchNorm2d between every convolution and its ReLU, named bn1_1 ... bn5_3.
    Otherwise as vgg16; put it in eval() to classify with its running statistics."""
    return _vgg16("vgg16_bn", num_classes, include_top, batch_norm=True)


def vgg16_torchvision_names(batch_norm=False):
    """torchvision's layer names -> ours: {"features.0": "conv1_1", ..., "classifier.6": "fc8"}
    (only the layers that hold parameters or buffers; with batch_norm, vgg16_bn's)."""
    names = OrderedDict((f"features.{i}", name) for i, name, layer in _vgg16_layers(batch_norm)
                        if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)))
    names.update([("classifier.0", "fc6"), ("classifier.3", "fc7"), ("classifier.6", "fc8")])
    return names


def vgg16_keras_names():
    """Keras's VGG16 layer names -> ours: {"block1_conv1": "conv1_1", ..., "fc1": "fc6", "fc2": "fc7",
    "predictions": "fc8"}; and the names a Keras 3 .weights.h5 file gives the layers when it does not
    store theirs (conv2d, conv2d_1, ..., conv2d_12, dense, dense_1, dense_2: by class, in build order)."""
    convs = [name for _, name, layer in _vgg16_layers() if isinstance(layer, nn.Conv2d)]
    names = OrderedDict()
    for name in convs:                                   # "conv3_2" is Keras's "block3_conv2"
        block, conv = name[len("conv"):].split("_")
        names[f"block{block}_conv{conv}"] = name
    names.update([("fc1", "fc6"), ("fc2", "fc7"), ("predictions", "fc8")])
    names.update((f"conv2d_{i}" if i else "conv2d", name) for i, name in enumerate(convs))
    names.update([("dense", "fc6"), ("dense_1", "fc7"), ("dense_2", "fc8")])
    return names
