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
from ..ops.loss import loss_options
from ..ops.norm import batch_norm_hyperparameters, lrn_hyperparameters
from ..ops.pool import adaptive_output_size, pool_hyperparameters
from ..tensor import Parameter
from .module import Module


def _uniform(shape, bound):
    return Parameter(_random.generator().uniform(-bound, bound, size=shape).astype(np.float32))


class Conv2d(Module):
    """2-D convolution. weight: (out, in/groups, kH, kW), PyTorch's layout and default
    initialisation (uniform in +-1/sqrt(fan_in)); AlexNet re-initialises as the paper did.
    padding: an int, (h, w), (top, bottom, left, right), "same" (stride 1) or "valid"."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 dilation=1):
        super().__init__()
        in_channels = checks.positive_int("Conv2d", "in_channels", in_channels)
        out_channels = checks.positive_int("Conv2d", "out_channels", out_channels)
        kh, kw = checks.pair("Conv2d", "kernel_size", kernel_size, 1)
        conv_hyperparameters("Conv2d", stride, padding, groups, dilation)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups!r} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.groups, self.dilation = stride, padding, groups, dilation
        bound = 1.0 / math.sqrt(in_channels // groups * kh * kw)
        self.weight = _uniform((out_channels, in_channels // groups, kh, kw), bound)
        self.bias = _uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups, self.dilation)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}"
                + (f", dilation={self.dilation}" if self.dilation not in (1, (1, 1)) else ""))


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
    """Max pooling (overlapping when stride < kernel_size); stride defaults to kernel_size.
    padding: an int, (h, w), (top, bottom, left, right), "same" or "valid". See F.max_pool2d
    for ceil_mode and return_indices (forward then returns (output, indices))."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
        super().__init__()
        pool_hyperparameters("MaxPool2d", kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.return_indices = bool(ceil_mode), bool(return_indices)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Average pooling; stride defaults to kernel_size. count_include_pad=True (PyTorch's default)
    divides by kH*kW, False by the number of the image's pixels in the window; see F.avg_pool2d."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        pool_hyperparameters("AvgPool2d", kernel_size, stride, padding, every_window_needs_a_pixel=not count_include_pad)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}")


class MaxUnpool2d(Module):
    """forward(x, indices, output_size=None): F.max_unpool2d, the inverse of MaxPool2d(return_indices=True)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        pool_hyperparameters("MaxUnpool2d", kernel_size, stride, padding, every_window_needs_a_pixel=False)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x, indices, output_size=None):
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, whatever the input size (F.adaptive_avg_pool2d);
    torchvision's VGG, AlexNet and ResNet end their feature extractors with one."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = adaptive_output_size("AdaptiveAvgPool2d", output_size)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


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


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share: PyTorch's parameters, buffers and modes.

    weight (gamma, starts at 1) and bias (beta, starts at 0) when affine; buffers
    running_mean (0), running_var (1) and num_batches_tracked (0, int64) when
    track_running_stats, under PyTorch's names, so that state_dict() and checkpoints
    hold them and torchvision's weights load. In training mode the layer normalises
    with the batch's statistics and moves the running ones towards them (momentum=None:
    a cumulative average, momentum 1/num_batches_tracked); in eval mode it uses the
    running ones (the batch's when track_running_stats=False). Frozen with
    ``trainable = False``, it stays in eval mode through train() (Module.trainable).
    """

    expected_dims = ()          # the input ranks the subclass accepts
    layout = ""
    inference_when_frozen = True    # trainable = False: running statistics, kept (Keras)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        name = type(self).__name__
        num_features, eps, momentum = batch_norm_hyperparameters(name, num_features, eps, momentum)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, np.float32))
            self.register_buffer("running_var", np.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(buffer, None)

    def forward(self, x):
        name = type(self).__name__
        x = checks.as_tensor(name, "input", x)
        if x.ndim not in self.expected_dims:
            raise ValueError(f"{name}: expected input of shape {self.layout}, got shape {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:            # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_statistics = self.training or self.running_mean is None
        keep = not self.training or self.track_running_stats   # which running statistics to use or update
        return F.batch_norm(x, self.running_mean if keep else None, self.running_var if keep else None,
                            self.weight, self.bias, use_batch_statistics, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel over N, H and W (torch.nn.BatchNorm2d)."""

    expected_dims = (4,)
    layout = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per feature C (torch.nn.BatchNorm1d);
    the usual place is between a Linear layer and its activation."""

    expected_dims = (2, 3)
    layout = "(N, C) or (N, C, L)"


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
    """softmax along ``dim`` (default -1; NumPy's name ``axis`` works too)."""

    def __init__(self, dim=None, *, axis=None):
        super().__init__()
        self.dim = checks.dim_or_axis("Softmax", -1, dim=dim, axis=axis)

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(Module):
    """Inverted dropout while training; identity in eval()."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_probability("Dropout", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Module):
    """Channel dropout (torch.nn.Dropout2d): while training, each (image, channel) plane of an
    (N, C, H, W) input is zeroed with probability p, the others scaled by 1/(1-p); identity
    in eval(). Neighbouring pixels of a feature map are strongly correlated, so dropping
    single pixels (Dropout) barely regularises a convolution; dropping whole maps does."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_probability("Dropout2d", p)

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

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
    """loss(logits, labels) = F.cross_entropy(logits, labels, weight, ignore_index, reduction, label_smoothing):
    softmax cross-entropy, by default the mean over the batch. weight: one number per class."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.reduction, self.ignore_index, self.label_smoothing = loss_options(
            "CrossEntropyLoss", reduction, ignore_index, label_smoothing)
        self.weight = weight

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class NLLLoss(Module):
    """loss(log_probs, labels) = F.nll_loss(log_probs, labels, weight, ignore_index, reduction)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        self.reduction, self.ignore_index, _ = loss_options("NLLLoss", reduction, ignore_index)
        self.weight = weight

    def forward(self, log_probs, labels):
        return F.nll_loss(log_probs, labels, self.weight, self.ignore_index, self.reduction)


class MSELoss(Module):
    """loss(x, target) = F.mse_loss(x, target, reduction): the mean squared error by default."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = loss_options("MSELoss", reduction)[0]

    def forward(self, x, target):
        return F.mse_loss(x, target, self.reduction)


class BCEWithLogitsLoss(Module):
    """loss(logits, targets) = F.binary_cross_entropy_with_logits(logits, targets)."""

    def forward(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets)
