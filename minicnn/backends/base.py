"""The one interface every backend implements.

A backend runs the numeric work of the ops on arrays of one device. Three kinds exist:

    ReferenceBackend   (backends/reference.py)  NumPy, written to be read: the definition
    KernelBackend      (backends/kernels.py)    the csrc/ kernels, through a loader:
                         HostLoader        (backends/host.py)  compiled for the CPU (minicnn._host)
                         RawKernelLoader   (backends/cuda.py)  CuPy RawModule / NVRTC on a GPU
                         Pybind11Loader    (backends/cuda.py)  minicnn._cuda (nvcc + cuBLAS) on a GPU

``backends.for_array(array)`` gives the instance that runs ops on that array's device.

Arrays are NCHW; float32 and float64 both work. ``kernel``, ``stride`` and
``dilation`` are (h, w) pairs of ints; ``padding`` is (top, bottom, left, right)
(pooling also takes an (h, w) pair, the same on both sides). Argument checks live
in the ops (minicnn/ops/); a backend may assume its arguments passed them, but
never lets a wrong-dtype or wrong-device array reach a kernel.
"""

import abc


class Backend(abc.ABC):
    """What an op may ask of a backend. Each method's docstring is its contract."""

    name = "backend"     # "reference", "kernels", "cuda-rawkernel", "cuda-pybind11"
    device = "cpu"       # where its arrays live: "cpu" or "cuda"

    def __repr__(self):
        return f"<minicnn backend {self.name!r} on {self.device}>"

    # ------------------------------------------------------------------ convolution and linear
    @abc.abstractmethod
    def conv2d_forward(self, x, w, b, stride, padding, groups, dilation, keep=None):
        """x: (N, C, H, W), w: (O, C/groups, kH, kW), b: (O,) or None -> y: (N, O, OH, OW).

        stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw):
        y[n, o, oy, ox] = b[o] + sum over c, i, j of w[o, c, i, j] x[n, c, oy*sh - top + i*dh, ox*sw - left + j*dw]
        (c over o's group; outside the image x reads 0), and
        OH = floor((H + top + bottom - dh*(kH-1) - 1) / sh) + 1, OW alike.
        keep: None, or a dict in which the backend may leave what its conv2d_backward can reuse
        (the kernels keep their im2col columns); the op hands it back as ``kept``."""

    @abc.abstractmethod
    def conv2d_backward(self, x, w, dy, stride, padding, groups, dilation, need_dx, need_dw, need_db, kept=None):
        """-> (dx, dw, db), None for each gradient not needed; the arguments as conv2d_forward's."""

    @abc.abstractmethod
    def linear_forward(self, x, w, b):
        """x: (N, in), w: (out, in), b: (out,) or None -> y = x w^T + b: (N, out)."""

    @abc.abstractmethod
    def linear_backward(self, x, w, dy, need_dx, need_dw, need_db):
        """-> (dx, dw, db), None for each gradient not needed."""

    # ------------------------------------------------------------------ pooling
    # padding: (top, bottom, left, right) (an (h, w) pair means the same on both sides).
    # The output size is shapes.pool_output_size's; backward takes it from dy.
    @abc.abstractmethod
    def max_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False):
        """-> (y, argmax): argmax (int64, y's shape) is the flat index h*W + w of each winner in its plane."""

    @abc.abstractmethod
    def max_pool2d_backward(self, dy, argmax, x_shape, kernel, stride, padding):
        """-> dx of shape x_shape: each output's gradient goes to its winner."""

    @abc.abstractmethod
    def avg_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
        """-> y, the sum of each window over its divisor (reference.avg_pool_divisor): kH*kW with zero
        padding counted (count_include_pad), the number of pixels of the image in the window otherwise."""

    @abc.abstractmethod
    def avg_pool2d_backward(self, dy, x_shape, kernel, stride, padding, count_include_pad=True):
        """-> dx of shape x_shape."""

    # ------------------------------------------------------------------ local response normalization
    @abc.abstractmethod
    def lrn_forward(self, x, size, alpha, beta, k):
        """-> (y, scale), scale = k + alpha * (sum of x^2 over the ``size`` nearest channels).

        ``alpha`` is the coefficient actually used (the op divides it by size for Caffe's convention)."""

    @abc.abstractmethod
    def lrn_backward(self, x, y, scale, dy, size, alpha, beta, k):
        """-> dx."""

    # ------------------------------------------------------------------ batch normalization
    @abc.abstractmethod
    def batch_norm_statistics(self, x):
        """x: (N, C, L) -> (mean, var): (C,) each, over the N*L values of each channel; var is biased (/ N*L)."""

    @abc.abstractmethod
    def batch_norm_forward(self, x, mean, var, weight, bias, eps):
        """x: (N, C, L); mean, var, weight, bias: (C,) -> y = (x - mean) / sqrt(var + eps) * weight + bias."""

    @abc.abstractmethod
    def batch_norm_backward(self, x, dy, mean, var, weight, eps, batch_statistics):
        """-> (dx, dweight, dbias); batch_statistics: were mean and var computed from x (training)?"""

    # ------------------------------------------------------------------ activations and dropout
    @abc.abstractmethod
    def relu_forward(self, x, negative_slope):
        """-> y = x where x > 0, negative_slope * x elsewhere."""

    @abc.abstractmethod
    def relu_backward(self, x, dy, negative_slope):
        """-> dx = dy where x > 0, negative_slope * dy elsewhere."""

    @abc.abstractmethod
    def dropout_forward(self, x, threshold, scale, seed, offset):
        """-> y = x * scale where kept, 0 where dropped (threshold and scale: random.dropout_threshold_and_scale);
        element i draws hash(seed, offset + i) (offset: random.dropout_offset)."""

    @abc.abstractmethod
    def dropout_backward(self, dy, threshold, scale, seed, offset):
        """-> dx, with the same mask (same seed and offset) and scale."""

    # ------------------------------------------------------------------ loss
    @abc.abstractmethod
    def softmax_cross_entropy_forward(self, logits, labels):
        """logits: (N, K), labels: (N,) int64 -> (loss (a 0-d array), probs (N, K))."""

    @abc.abstractmethod
    def softmax_cross_entropy_backward(self, probs, labels, dloss):
        """-> dlogits = (probs - onehot(labels)) * dloss / N; dloss a number or a 0-d array."""

    @abc.abstractmethod
    def nll_loss_forward(self, log_probs, labels, weight, ignore_index):
        """log_probs: (N, C, D), labels: (N, D) int64, weight: (C,) -> (loss, counted), both (N, D):
        loss = -weight[y] * log_probs[n, y, d] and counted = weight[y] for y = labels[n, d]; 0 and 0
        where y == ignore_index."""

    @abc.abstractmethod
    def nll_loss_backward(self, labels, weight, ignore_index, dloss, classes):
        """dloss: (N, D) -> d log_probs: (N, classes, D) = -weight[c] * dloss where c == labels, else 0."""

    @abc.abstractmethod
    def squared_error_forward(self, x, target):
        """-> (x - target)^2, element by element."""

    @abc.abstractmethod
    def squared_error_backward(self, x, target, dloss):
        """dloss: x's shape -> dx = 2 (x - target) dloss."""

    # ------------------------------------------------------------------ optimizer updates (in place)
    @abc.abstractmethod
    def sgd_update(self, param, grad, velocity, lr, momentum, weight_decay, nesterov):
        """param and velocity updated in place; velocity may be None when momentum is 0."""

    @abc.abstractmethod
    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """param, m and v updated in place; step counts from 1."""

    @abc.abstractmethod
    def adamw_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """param, m and v updated in place (weight decay decoupled from the gradient); step counts from 1."""

    @abc.abstractmethod
    def rmsprop_update(self, param, grad, square_avg, grad_avg, buffer, lr, alpha, eps, weight_decay, momentum,
                       centered):
        """param, square_avg, grad_avg (None unless centered) and buffer (None unless momentum > 0)
        updated in place."""
