"""The AlexNet variant of torchvision (after Krizhevsky's "One weird trick", 2014), whose
pretrained ImageNet weights are the ones most people have.

It differs from the paper's network (mc.models.alexnet): 64-192-384-256-256 filters
instead of 96-256-384-384-256, conv1 padded by 2, no local response normalization, no
two-tower groups, dropout before fc6 and fc7 rather than after, and an adaptive
average pooling to 6x6 before the dense layers (identity at 224x224 and 227x227
inputs, which both give 6x6 feature maps). The layers are torchvision's, in its order,
so its weights load (minicnn.weights maps ``features.0.weight`` ... to ``conv1.weight``
...); our children are named conv1 relu1 pool1 ... pool5, then with the top
avgpool flatten drop6 fc6 relu6 drop7 fc7 relu7 fc8.
"""

from collections import OrderedDict

import numpy as np

from .. import nn


def alexnet_torchvision(num_classes=1000, include_top=True):
    """torchvision's AlexNet (61,100,840 parameters for 1000 classes), 3x224x224 inputs.

    include_top=False gives the convolutional feature extractor alone (256x6x6 per
    224x224 image). Weights start with PyTorch's default initialisation, as in torchvision.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"alexnet_torchvision: num_classes must be a positive int, got {num_classes!r}")
    layers = [
        ("conv1", nn.Conv2d(3, 64, 11, stride=4, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(64, 192, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(192, 384, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 256, 3, padding=1)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(256, 256, 3, padding=1)), ("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(3, 2)),
    ]
    if include_top:
        layers += [
            ("avgpool", nn.AdaptiveAvgPool2d(6)), ("flatten", nn.Flatten()),
            ("drop6", nn.Dropout(0.5)), ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU()),
            ("drop7", nn.Dropout(0.5)), ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()),
            ("fc8", nn.Linear(4096, num_classes)),
        ]
    return nn.Sequential(OrderedDict(layers))


def alexnet_torchvision_names():
    """torchvision's layer names -> ours (only the layers that hold parameters)."""
    return OrderedDict([
        ("features.0", "conv1"), ("features.3", "conv2"), ("features.6", "conv3"),
        ("features.8", "conv4"), ("features.10", "conv5"),
        ("classifier.1", "fc6"), ("classifier.4", "fc7"), ("classifier.6", "fc8"),
    ])
