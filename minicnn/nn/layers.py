"""Layers: thin Modules around minicnn.functional, holding parameters and hyper-parameters.

Each constructor checks its hyper-parameters with the same checks as its op
(minicnn/ops/), so a bad argument fails when the layer is built, naming the layer.
"""

import math

import numpy as np

from .. import functional as F
from .. import random as _random
from ..ops import checks
from ..ops.activation import dropout_probability
from ..ops.conv import conv_hyperparameters
from ..ops.norm import lrn_hyperparameters
from ..ops.pool import pool_hyperparameters
from ..tensor import Parameter
from .module import Module


def _uniform(shape, bound):
    return Parameter(_random.generator().uniform(-bound, bound, size=shape).astype(np.float32))


class Conv2d(Module):
    """2-D convolution. weight: (out, in/groups, kH, kW), PyTorch's layout and default
    initialisation (uniform in +-1/sqrt(fan_in)); AlexNet re-initialises as the paper did."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True):
        super().__init__()
        in_channels = checks.positive_int("Conv2d", "in_channels", in_channels)
        out_channels = checks.positive_int("Conv2d", "out_channels", out_channels)
        kh, kw = checks.pair("Conv2d", "kernel_size", kernel_size, 1)
        conv_hyperparameters("Conv2d", stride, padding, groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups!r} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.groups = stride, padding, groups
        bound = 1.0 / math.sqrt(in_channels // groups * kh * kw)
        self.weight = _uniform((out_channels, in_channels // groups, kh, kw), bound)
        self.bias = _uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


class Linear(Module):
    """y = x W^T + b, W: (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = checks.positive_int("Linear", "in_features", in_features)
        self.out_features = checks.positive_int("Linear", "out_features", out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class MaxPool2d(Module):
    """Max pooling (overlapping when stride < kernel_size); stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        pool_hyperparameters(type(self).__name__, kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    """Average pooling, zero padding counted (divisor kH*kW)."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class LocalResponseNorm(Module):
    """The paper's LRN (k=2, n=5, alpha=1e-4, beta=0.75); see F.local_response_norm."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, divide_alpha_by_size=False):
        super().__init__()
        lrn_hyperparameters("LocalResponseNorm", size, alpha, beta, k)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.divide_alpha_by_size = divide_alpha_by_size

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.divide_alpha_by_size)

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = checks.number("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    """softmax along ``axis`` (PyTorch calls it dim)."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)


class Dropout(Module):
    """Inverted dropout while training; identity in eval()."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_probability("Dropout", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)


class Identity(Module):
    """Returns its input: a placeholder where a layer is removed (a cut network's head, say)."""

    def forward(self, x):
        return x


class CrossEntropyLoss(Module):
    """loss(logits, labels) = F.cross_entropy(logits, labels): softmax cross-entropy, mean over the batch."""

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels)


class BCEWithLogitsLoss(Module):
    """loss(logits, targets) = F.binary_cross_entropy_with_logits(logits, targets)."""

    def forward(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets)
