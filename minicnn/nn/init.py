"""Weight initialisers the models share (in place, on a Parameter's data)."""

import numpy as np

from .. import random as _random


def kaiming_normal_fan_out(weight):
    """weight ~ N(0, 2 / fan_out), fan_out = out_channels * kH * kW (He et al. 2015, "fan_out" mode,
    torchvision's choice for VGG and ResNet convolutions): the gradients flowing back through a
    ReLU network keep their scale from layer to layer. Float32 draws from minicnn's generator."""
    fan_out = weight.shape[0] * int(np.prod(weight.shape[2:]))
    std = np.float32(np.sqrt(2.0 / fan_out))
    weight.data = std * _random.generator().standard_normal(weight.shape, dtype=np.float32)
