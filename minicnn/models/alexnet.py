"""AlexNet as Krizhevsky, Sutskever and Hinton (NIPS 2012) describe it, and a small sibling."""

from collections import OrderedDict

import numpy as np

from .. import nn
from .. import random as _random
from ..shapes import output_size


def _paper_init(model, biases_one):
    """The paper's initialisation: weights ~ N(0, 0.01); biases 1 in the layers named in
    ``biases_one`` (so ReLUs start in their positive region), 0 elsewhere."""
    rng = _random.generator()
    for name, layer in model.named_children():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.weight.data = rng.normal(0.0, 0.01, size=layer.weight.shape).astype(np.float32)
            layer.bias.data = np.full(layer.bias.shape, 1.0 if name in biases_one else 0.0, dtype=np.float32)


def _he_init(model):
    """He et al. (2015) initialisation: weights ~ N(0, 2 / fan_in), biases 0. It keeps the
    scale of ReLU activations from layer to layer, so the small network below starts to
    learn in its first epoch with the paper's SGD (lr 0.02, momentum 0.9); with PyTorch's
    default uniform initialisation it stayed at chance (loss 2.30) for two epochs on mnist5k."""
    rng = _random.generator()
    for name, layer in model.named_children():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in = int(np.prod(layer.weight.shape[1:]))
            layer.weight.data = (rng.normal(0.0, 1.0, size=layer.weight.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            layer.bias.data = np.zeros(layer.bias.shape, dtype=np.float32)


def alexnet(num_classes=1000, include_top=True):
    """The paper's two-tower AlexNet on 3x227x227 inputs (60,965,224 parameters for 1000 classes).

    The towers are convolution groups: conv2, conv4 and conv5 see only their own
    tower's channels (groups=2); conv3 and the dense layers see both. Children
    are named conv1 relu1 norm1 pool1 ... fc8. include_top=False stops after
    pool5 (the convolutional feature extractor, 256x6x6 per image).
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"alexnet: num_classes must be a positive int, got {num_classes!r}")
    layers = [
        ("conv1", nn.Conv2d(3, 96, 11, stride=4)), ("relu1", nn.ReLU()),
        ("norm1", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)), ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu2", nn.ReLU()),
        ("norm2", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)), ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(3, 2)),
    ]
    if include_top:
        layers += [
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.5)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.5)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]
    model = nn.Sequential(OrderedDict(layers))
    _paper_init(model, biases_one={"conv2", "conv4", "conv5", "fc6", "fc7"})
    return model


def alexnet_small(num_classes=10, in_channels=1, input_size=28, include_top=True):
    """AlexNet's ingredients at the scale of 28x28 or 32x32 images (MNIST, CIFAR-10):
    ReLU, LRN, overlapping 3/2 max pooling, two-tower groups, dropout in the dense layers.
    Children are named like alexnet()'s. input_size: the side of square inputs, or
    (height, width); fc6 is sized for it."""
    sides = (input_size, input_size) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
    if len(sides) != 2 or any(not isinstance(s, (int, np.integer)) or s < 15 for s in sides):
        raise ValueError(f"alexnet_small: input_size must be an int >= 15 or a (height, width) pair of them "
                         f"(three 3/2 poolings need 15 pixels), got {input_size!r}")
    height, width = sides                  # the convolutions keep the size; each pool is 3/2
    for _ in range(3):
        height, width = output_size(height, 3, 2, 0), output_size(width, 3, 2, 0)
    layers = [
        ("conv1", nn.Conv2d(in_channels, 32, 5, padding=2)), ("relu1", nn.ReLU()),
        ("norm1", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)), ("pool1", nn.MaxPool2d(3, 2)),
        # 3x3 where the paper has 5x5: a digit needs less reach, and the NumPy step is ~1.5x faster
        ("conv2", nn.Conv2d(32, 64, 3, padding=1, groups=2)), ("relu2", nn.ReLU()),
        ("norm2", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)), ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(64, 96, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(96, 96, 3, padding=1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(96, 64, 3, padding=1, groups=2)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(3, 2)),
    ]
    if include_top:
        layers += [
            ("flatten", nn.Flatten()),
            # 512 wide: with dropout 0.5 in both, 256 units learned markedly slower on mnist5k
            ("fc6", nn.Linear(64 * height * width, 512)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.5)),
            ("fc7", nn.Linear(512, 512)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.5)),
            ("fc8", nn.Linear(512, num_classes)),
        ]
    model = nn.Sequential(OrderedDict(layers))
    _he_init(model)
    return model
