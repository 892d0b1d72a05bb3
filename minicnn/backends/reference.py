"""The NumPy reference backend: every op's forward and backward, written to be read.

This is the definition every other backend (host-compiled kernels, CUDA) is
checked against. The interface, and what each method promises, is declared in
backends/base.py. Each method takes and returns plain arrays; argument checks
live in the ops (minicnn/ops/). The helpers above the class (im2col, col2im,
the channel window sum) are the NumPy twins of kernels in csrc/.
"""

import numpy as np

from ..random import dropout_mask
from ..shapes import output_size
from .base import Backend


# --------------------------------------------------------------------------- the NumPy twins of csrc kernels
def im2col(x, kernel, stride, padding):
    """Unfold every receptive field into a column.

    x: (N, C, H, W)  ->  cols: (N, C*kh*kw, OH*OW), rows ordered (c, i, j) so that
    a weight of shape (O, C, kh, kw) reshaped to (O, C*kh*kw) multiplies it.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):          # each kernel offset (i, j) picks a strided slice
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(cols, x_shape, kernel, stride, padding):
    """The adjoint of im2col: add every column entry back to the pixel it came from."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, :, i, j]
    return xp[:, :, ph:ph + h, pw:pw + w]


def _side_by_side(a):
    """(N, R, L) -> (R, N*L): the batch's matrices side by side, so that one GEMM serves them all."""
    n, r, l = a.shape
    return a.transpose(1, 0, 2).reshape(r, n * l)


def _unstack(a, n):
    """(R, N*L) -> (N, R, L), the inverse of _side_by_side."""
    r = a.shape[0]
    return a.reshape(r, n, -1).transpose(1, 0, 2)


def channel_window_sum(a, size):
    """s[:, c] = sum of a[:, c'] for c' in [c - size//2, c + size//2], clipped at the edges."""
    half = size // 2
    channels = a.shape[1]
    s = np.zeros_like(a)
    for c in range(channels):
        s[:, c] = a[:, max(0, c - half):min(channels, c + half + 1)].sum(axis=1)
    return s


class ReferenceBackend(Backend):
    """NumPy, loop-free where a strided view makes it clear, every derivative said in its docstring."""

    name = "reference"
    device = "cpu"

    # ------------------------------------------------------------------ convolution
    def conv2d_forward(self, x, w, b, stride, padding, groups):
        """y[n, o] = sum_c w[o, c] * x[n, c] (cross-correlation) + b[o], per group.

        With cols = im2col(x), each group g is one GEMM over the whole batch:
        y_g (O/g, N*OH*OW) = w_g (O/g, C/g*kh*kw) @ cols_g (C/g*kh*kw, N*OH*OW).
        """
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        oh, ow = output_size(h, kh, stride[0], padding[0]), output_size(wd, kw, stride[1], padding[1])
        cols = im2col(x, (kh, kw), stride, padding).reshape(n, groups, cg * kh * kw, oh * ow)
        wg = w.reshape(groups, o // groups, cg * kh * kw)
        y = np.empty((n, groups, o // groups, oh * ow), dtype=x.dtype)
        for g in range(groups):
            y[:, g] = _unstack(wg[g] @ _side_by_side(cols[:, g]), n)
        y = y.reshape(n, o, oh, ow)
        if b is not None:
            y += b.reshape(1, o, 1, 1)
        return y

    def conv2d_backward(self, x, w, dy, stride, padding, groups, need_dx=True, need_dw=True, need_db=True):
        """Gradients of conv2d, per group g, with the batch side by side as in forward:

        dw_g   = dy_g @ cols_g^T                    (the GEMM of the weight gradient)
        dcols_g = w_g^T @ dy_g,  dx = col2im(dcols) (the GEMM of the data gradient, folded back)
        db[o]  = sum over n, y, x of dy[n, o]
        """
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        oh, ow = dy.shape[2], dy.shape[3]
        og, k = o // groups, cg * kh * kw
        dyg = dy.reshape(n, groups, og, oh * ow)
        wg = w.reshape(groups, og, k)
        dx = dw = db = None
        if need_dw:
            cols = im2col(x, (kh, kw), stride, padding).reshape(n, groups, k, oh * ow)
            dw = np.empty((groups, og, k), dtype=x.dtype)
            for g in range(groups):
                # computed as (cols_g @ dy_g^T)^T: the same product, but OpenBLAS is many times
                # faster with the long N*OH*OW dimension inside than with it as the short side
                dw[g] = (_side_by_side(cols[:, g]) @ _side_by_side(dyg[:, g]).T).T
            dw = dw.reshape(w.shape)
        if need_dx:
            dcols = np.empty((n, groups, k, oh * ow), dtype=x.dtype)
            for g in range(groups):
                dcols[:, g] = _unstack(wg[g].T @ _side_by_side(dyg[:, g]), n)
            dx = col2im(dcols.reshape(n, c * kh * kw, oh * ow), x.shape, (kh, kw), stride, padding)
        if need_db:
            db = dy.sum(axis=(0, 2, 3))
        return dx, dw, db

    def linear_forward(self, x, w, b):
        """y = x w^T + b, with x: (N, in), w: (out, in), b: (out,)."""
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def linear_backward(self, x, w, dy, need_dx=True, need_dw=True, need_db=True):
        """dx = dy w,  dw = dy^T x,  db = sum over the batch of dy."""
        dx = dy @ w if need_dx else None
        dw = dy.T @ x if need_dw else None
        db = dy.sum(axis=0) if need_db else None
        return dx, dw, db

    # ------------------------------------------------------------------ pooling
    def max_pool2d_forward(self, x, kernel, stride, padding):
        """y = the maximum of each window; padding never wins (it is -inf).

        argmax holds, for each output, the flat index h*W + w of the winning input
        pixel in its (n, c) plane. Ties go to the first maximum in row-major window
        order, because a later entry replaces the best only when strictly greater.
        """
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
        y = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
        argmax = np.zeros((n, c, oh, ow), dtype=np.int64)
        rows = np.arange(oh)[:, None] * sh - ph      # top-left corner of each window,
        cols = np.arange(ow)[None, :] * sw - pw      # in unpadded coordinates
        for i in range(kh):
            for j in range(kw):
                candidate = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                better = candidate > y
                y = np.where(better, candidate, y)
                argmax = np.where(better, (rows + i) * w + (cols + j), argmax)
        return y, argmax

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel, stride, padding):
        """Each output's gradient goes to the input pixel that won its window."""
        n, c, h, w = x_shape
        dx = np.zeros((n * c, h * w), dtype=dy.dtype)
        planes = np.arange(n * c)[:, None]
        np.add.at(dx, (planes, argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))
        return dx.reshape(x_shape)

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        """y = mean of each window, zero padding counted (divisor kh*kw, as PyTorch's default)."""
        (kh, kw) = kernel
        cols = im2col(x.reshape(-1, 1, *x.shape[2:]), kernel, stride, padding)   # (N*C, kh*kw, OH*OW)
        oh = output_size(x.shape[2], kh, stride[0], padding[0])
        ow = output_size(x.shape[3], kw, stride[1], padding[1])
        return cols.mean(axis=1).reshape(x.shape[0], x.shape[1], oh, ow)

    def avg_pool2d_backward(self, dy, x_shape, kernel, stride, padding):
        """Each input pixel receives 1/(kh*kw) of the gradient of every window it lies in."""
        (kh, kw) = kernel
        n, c, h, w = x_shape
        dcols = np.repeat(dy.reshape(n * c, 1, -1) / (kh * kw), kh * kw, axis=1)
        return col2im(dcols, (n * c, 1, h, w), kernel, stride, padding).reshape(x_shape)

    # ------------------------------------------------------------------ local response normalization
    def lrn_forward(self, x, size, alpha, beta, k):
        """b = a / scale^beta with scale = k + alpha * (sum of a^2 over the nearest ``size`` channels)."""
        scale = k + alpha * channel_window_sum(x * x, size)
        return x * scale ** -beta, scale

    def lrn_backward(self, x, y, scale, dy, size, alpha, beta, k):
        """d b_j / d a_i = [i == j] scale_j^-beta - 2 alpha beta a_i b_j / scale_j, for i in j's window.

        The window is symmetric, so summing over the j whose window holds i is the
        same channel-window sum used in forward.
        """
        return dy * scale ** -beta - 2 * alpha * beta * x * channel_window_sum(dy * y / scale, size)

    # ------------------------------------------------------------------ activations
    def relu_forward(self, x, negative_slope):
        """y = x where x > 0, negative_slope * x elsewhere (0 gives the plain ReLU)."""
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))

    def relu_backward(self, x, dy, negative_slope):
        """dy where x > 0, negative_slope * dy elsewhere (the subgradient at 0 is the slope)."""
        return np.where(x > 0, dy, dy * dy.dtype.type(negative_slope))

    # ------------------------------------------------------------------ dropout
    def dropout_forward(self, x, threshold, scale, seed):
        """Inverted dropout: y = x * scale where kept, 0 where dropped."""
        return np.where(dropout_mask(x.shape, threshold, seed), x * scale, x.dtype.type(0))

    def dropout_backward(self, dy, threshold, scale, seed):
        """The same mask (same seed) times the same scale."""
        return np.where(dropout_mask(dy.shape, threshold, seed), dy * scale, dy.dtype.type(0))

    # ------------------------------------------------------------------ loss
    def softmax_cross_entropy_forward(self, logits, labels):
        """loss = mean over the batch of -log softmax(logits)[label].

        Stable: log softmax(z) = z - max(z) - log(sum(exp(z - max(z)))).
        """
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probs = shifted - log_sum
        n = logits.shape[0]
        loss = -log_probs[np.arange(n), labels].mean()
        return np.asarray(loss, dtype=logits.dtype), np.exp(log_probs)

    def softmax_cross_entropy_backward(self, probs, labels, dloss):
        """d loss / d logits = (softmax(logits) - onehot(label)) / N."""
        n = probs.shape[0]
        dlogits = probs.copy()
        dlogits[np.arange(n), labels] -= 1
        return dlogits * (dloss / n)

    # ------------------------------------------------------------------ optimizer updates
    def sgd_update(self, param, grad, velocity, lr, momentum, weight_decay, nesterov):
        """SGD with momentum and L2 weight decay, as in PyTorch (the paper's rule, lr folded into v):

        g = grad + weight_decay * param;  v = momentum * v + g;
        param -= lr * (g + momentum * v if nesterov else v)
        """
        g = grad + weight_decay * param
        if momentum == 0:
            param -= lr * g
            return
        velocity *= momentum
        velocity += g
        param -= lr * (g + momentum * velocity if nesterov else velocity)

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """Adam (Kingma & Ba) with bias correction; weight decay added to the gradient (L2)."""
        g = grad + weight_decay * param
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** step)
        v_hat = v / (1 - beta2 ** step)
        param -= lr * m_hat / (np.sqrt(v_hat) + eps)
