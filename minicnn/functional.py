"""The public ops of minicnn (import minicnn.functional as F).

Each op is one Function class in minicnn/ops/ (one module per family), with
its argument checks, its forward and its backward; the functions here are
their public faces, with PyTorch's names and signatures:

    ops/conv.py        conv2d, linear
    ops/pool.py        max_pool2d, avg_pool2d, global_avg_pool2d, adaptive_avg_pool2d, max_unpool2d
    ops/norm.py        local_response_norm, batch_norm
    ops/activation.py  relu, leaky_relu, sigmoid, tanh, dropout, dropout2d
    ops/loss.py        softmax, log_softmax, cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits
    ops/tensor_ops.py  flatten (and the ops behind the Tensor methods)

Each op checks its arguments first, so bad input is a clear ValueError/TypeError
naming the argument, never a crash inside a kernel. The arithmetic of the ops
with kernels is in the backends (backends/reference.py is the readable NumPy
definition); sigmoid, tanh, softmax and binary cross-entropy compute their
forward and backward in NumPy/CuPy inside their Function.
"""

from .ops.activation import dropout, dropout2d, leaky_relu, relu, sigmoid, tanh
from .ops.conv import conv2d, linear
from .ops.loss import binary_cross_entropy_with_logits, cross_entropy, log_softmax, mse_loss, nll_loss, softmax
from .ops.norm import batch_norm, local_response_norm
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d, max_unpool2d
from .ops.tensor_ops import flatten

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "adaptive_avg_pool2d", "max_unpool2d",
    "local_response_norm", "batch_norm", "relu", "leaky_relu", "sigmoid", "tanh", "dropout", "dropout2d",
    "linear", "flatten",
    "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits",
]
