"""ResNet-18 (He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", 2016)
in torchvision's layout, with torchvision's state_dict names.

    conv1 7x7/2 64, bn1, relu, maxpool 3x3/2 pad 1        (3x224x224 -> 64x56x56)
    layer1: 2 BasicBlocks, 64 channels                     (64x56x56)
    layer2: 2 BasicBlocks, 128 channels, the first /2      (128x28x28)
    layer3: 2 BasicBlocks, 256 channels, the first /2      (256x14x14)
    layer4: 2 BasicBlocks, 512 channels, the first /2      (512x7x7)
    avgpool (adaptive, to 1x1), flatten, fc 512 -> classes

A BasicBlock is two 3x3 convolutions, each followed by a BatchNorm (the first by a
ReLU too), plus a shortcut: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
The shortcut is the identity, or, where the block halves the size or changes the
channels, ``downsample``: a 1x1 convolution with the block's stride and a BatchNorm
(torchvision's "option B"). The convolutions have no bias: the BatchNorm after each
has one. Since every name is torchvision's (``layer1.0.conv1.weight``,
``layer2.0.downsample.1.running_var``, ``fc.bias`` ...), torchvision's weights load
with no renaming (minicnn.weights.load).
"""

from collections import OrderedDict

import numpy as np

from .. import nn
from ..nn import init


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers and a shortcut (torchvision.models.resnet.BasicBlock)."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            # the shortcut must match the block's output: 1x1 conv with the block's stride, then BN
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def _layer(in_channels, channels, blocks, stride):
    """One stage: ``blocks`` BasicBlocks, the first with ``stride`` (and a downsample where needed)."""
    layers = [BasicBlock(in_channels, channels, stride)]
    layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet18(num_classes=1000, include_top=True):
    """ResNet-18 (11,689,512 parameters for 1000 classes), 3x224x224 inputs (any size of at least
    32x32 works: the adaptive pooling makes 512 features of any feature map).

    A Sequential with children conv1 bn1 relu maxpool layer1 layer2 layer3 layer4, then with
    the top avgpool flatten fc. include_top=False stops after layer4 (512 channels, 7x7 for
    a 224x224 image): the feature extractor for transfer learning. Initialised as torchvision
    does: conv weights Kaiming-normal (fan-out), BatchNorm weight 1 and bias 0, fc PyTorch's
    default. Train it in train() mode (batch statistics), classify in eval() mode (running ones).
    """
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"resnet18: num_classes must be a positive int, got {num_classes!r}")
    layers = [
        ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)), ("bn1", nn.BatchNorm2d(64)),
        ("relu", nn.ReLU()), ("maxpool", nn.MaxPool2d(3, stride=2, padding=1)),
        ("layer1", _layer(64, 64, 2, 1)), ("layer2", _layer(64, 128, 2, 2)),
        ("layer3", _layer(128, 256, 2, 2)), ("layer4", _layer(256, 512, 2, 2)),
    ]
    if include_top:
        layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("fc", nn.Linear(512, num_classes))]
    model = nn.Sequential(OrderedDict(layers))
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            init.kaiming_normal_fan_out(layer.weight)
    return model
