"""The NumPy reference backend: every op's forward and backward, written to be read.

This is the definition every other backend (host-compiled kernels, CUDA) is
checked against. The interface, and what each method promises, is declared in
backends/base.py. Each method takes and returns plain arrays; argument checks
live in the ops (minicnn/ops/). The helpers above the class (im2col, col2im,
the channel window sum) are the NumPy twins of kernels in csrc/.
"""

import numpy as np

from ..random import dropout_mask
from ..shapes import four_pads, output_size, pool_output_shape
from .base import Backend


# --------------------------------------------------------------------------- the NumPy twins of csrc kernels
def im2col(x, kernel, stride, padding, dilation):
    """Unfold every receptive field into a column, the batch's columns side by side.

    x: (N, C, H, W)  ->  cols: (C*kh*kw, N, OH*OW), rows ordered (c, i, j) so that a
    weight of shape (O, C, kh, kw) reshaped to (O, C*kh*kw) multiplies cols reshaped
    to (C*kh*kw, N*OH*OW) in one product for the whole batch.
    padding: (top, bottom, left, right); dilation: (dh, dw), the step between taps.
    Output (i, j) of the window at (oy, ox) is x[oy*sh - top + i*dh, ox*sw - left + j*dw].
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = output_size(h, kh, sh, (top, bottom), dh), output_size(w, kw, sw, (left, right), dw)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):          # each tap (i, j) picks a strided slice of every image
        for j in range(kw):
            window = xp[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw]
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n, oh * ow)


def col2im(cols, x_shape, kernel, stride, padding, dilation):
    """The adjoint of im2col: add every column entry back to the pixel it came from
    (taps in row-major order, the order the kernel's gather adds them in)."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = output_size(h, kh, sh, (top, bottom), dh), output_size(w, kw, sw, (left, right), dw)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    return xp[:, :, top:top + h, left:left + w]


def _pad_for_windows(x, kernel, stride, padding, out, fill):
    """x padded with ``fill`` on every side, far enough at the bottom and right for every
    one of the out = (OH, OW) windows (a ceil_mode window may reach past the padding)."""
    top, bottom, left, right = four_pads(padding)
    h, w = x.shape[2:]
    bottom = max(bottom, (out[0] - 1) * stride[0] + kernel[0] - top - h)
    right = max(right, (out[1] - 1) * stride[1] + kernel[1] - left - w)
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)


def avg_pool_divisor(x_shape, kernel, stride, padding, out, count_include_pad):
    """(OH, OW): what average pooling divides each window's sum by. Along each axis a window
    [start, start + k) counts its positions inside the padded input [-begin, size + end) when
    zero padding is counted (count_include_pad), inside the input [0, size) when not."""
    top, bottom, left, right = four_pads(padding)

    def counted(size, k, s, begin, end, n_out):
        start = np.arange(n_out) * s - begin
        lo, hi = (-begin, size + end) if count_include_pad else (0, size)
        return np.minimum(start + k, hi) - np.maximum(start, lo)

    rows = counted(x_shape[2], kernel[0], stride[0], top, bottom, out[0])
    cols = counted(x_shape[3], kernel[1], stride[1], left, right, out[1])
    return rows[:, None] * cols[None, :]


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
    def conv2d_forward(self, x, w, b, stride, padding, groups, dilation, keep=None):
        """y[n, o, oy, ox] = sum over c, i, j of w[o, c, i, j] * x[n, c, oy*sh - top + i*dh, ox*sw - left + j*dw]
        + b[o], the sum over c running over o's group (cross-correlation; padding reads 0).

        With cols = im2col(x) (rows (c, i, j), columns (n, oy, ox)), each group g is one
        GEMM over the whole batch: y_g (O/g, N*OH*OW) = w_g (O/g, C/g*kh*kw) @ cols_g (C/g*kh*kw, N*OH*OW).
        (keep: unused; the reference computes cols again in backward, the plainer way.)
        """
        n, o = x.shape[0], w.shape[0]
        kh, kw = w.shape[2:]
        cols = im2col(x, (kh, kw), stride, padding, dilation)          # (C*kh*kw, N, OH*OW)
        oh = output_size(x.shape[2], kh, stride[0], padding[0:2], dilation[0])
        ow = output_size(x.shape[3], kw, stride[1], padding[2:4], dilation[1])
        y = w.reshape(groups, o // groups, -1) @ cols.reshape(groups, -1, n * oh * ow)   # one GEMM per group
        y = np.ascontiguousarray(y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3))   # columns (n, oy, ox) to NCHW
        if b is not None:
            y += b.reshape(1, o, 1, 1)
        return y

    def conv2d_backward(self, x, w, dy, stride, padding, groups, dilation, need_dx=True, need_dw=True,
                        need_db=True, kept=None):
        """Gradients of conv2d, per group g, with the batch side by side as in forward
        (dy_g: (O/g, N*OH*OW), dy's channels of group g with the batch laid out as cols' columns):

        dw_g    = dy_g @ cols_g^T                    (the GEMM of the weight gradient)
        dcols_g = w_g^T @ dy_g,  dx = col2im(dcols)  (the GEMM of the data gradient, folded back)
        db[o]   = sum over n, y, x of dy[n, o]
        """
        n, o = x.shape[0], w.shape[0]
        kh, kw = w.shape[2:]
        dy_side = dy.transpose(1, 0, 2, 3).reshape(groups, o // groups, -1)     # (groups, O/g, N*OH*OW)
        wg = w.reshape(groups, o // groups, -1)                                 # (groups, O/g, C/g*kh*kw)
        dx = dw = db = None
        if need_dw:
            cols = im2col(x, (kh, kw), stride, padding, dilation).reshape(groups, wg.shape[2], -1)
            # computed as (cols_g @ dy_g^T)^T: the same product, but multi-threaded OpenBLAS ran
            # dy_g @ cols_g^T many times slower on some of these shapes
            dw = (cols @ dy_side.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(w.shape)
        if need_dx:
            dcols = wg.transpose(0, 2, 1) @ dy_side                             # (groups, C/g*kh*kw, N*OH*OW)
            dx = col2im(dcols, x.shape, (kh, kw), stride, padding, dilation)
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
    # padding is (top, bottom, left, right) (an (h, w) pair means the same on both sides);
    # window (oy, ox) covers rows oy*sh - top .. oy*sh - top + kh - 1, likewise columns.
    def max_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False):
        """y = the maximum of each window; padding never wins (it is -inf).

        argmax holds, for each output, the flat index h*W + w of the winning input
        pixel in its (n, c) plane. Ties go to the first maximum in row-major window
        order, because a later entry replaces the best only when strictly greater.
        """
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (top, _, left, _) = kernel, stride, four_pads(padding)
        oh, ow = pool_output_shape(x.shape, kernel, stride, padding, ceil_mode)
        xp = _pad_for_windows(x, kernel, stride, padding, (oh, ow), -np.inf)
        y = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
        argmax = np.zeros((n, c, oh, ow), dtype=np.int64)
        rows = np.arange(oh)[:, None] * sh - top     # top-left corner of each window,
        cols = np.arange(ow)[None, :] * sw - left    # in unpadded coordinates
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

    def avg_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
        """y = the sum of each window's pixels (padding adds 0) / the window's divisor:

        kh*kw, with zero padding counted (count_include_pad, PyTorch's default), except
        where a ceil_mode window reaches past the padded input; the number of real pixels
        in the window otherwise (avg_pool_divisor).
        """
        (kh, kw), (sh, sw) = kernel, stride
        oh, ow = pool_output_shape(x.shape, kernel, stride, padding, ceil_mode)
        xp = _pad_for_windows(x, kernel, stride, padding, (oh, ow), 0)
        total = np.zeros(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                total += xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
        return total / avg_pool_divisor(x.shape, kernel, stride, padding, (oh, ow), count_include_pad).astype(x.dtype)

    def avg_pool2d_backward(self, dy, x_shape, kernel, stride, padding, count_include_pad=True):
        """Each input pixel receives dy / divisor of every window it lies in."""
        (kh, kw), (sh, sw), (top, _, left, _) = kernel, stride, four_pads(padding)
        n, c, h, w = x_shape
        oh, ow = dy.shape[2:]
        share = dy / avg_pool_divisor(x_shape, kernel, stride, padding, (oh, ow), count_include_pad).astype(dy.dtype)
        dxp = _pad_for_windows(np.zeros(x_shape, dtype=dy.dtype), kernel, stride, padding, (oh, ow), 0)
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share
        return dxp[:, :, top:top + h, left:left + w]

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

    # ------------------------------------------------------------------ batch normalization
    def batch_norm_statistics(self, x):
        """x: (N, C, L) -> (mean, var) of each channel over its N*L values; var divides by N*L (biased)."""
        mean = x.mean(axis=(0, 2))
        var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        return mean, var

    def batch_norm_forward(self, x, mean, var, weight, bias, eps):
        """y = (x - mean) / sqrt(var + eps) * weight + bias, each (C,) vector applied to channel c of x (N, C, L)."""
        def per_channel(v):
            return v[None, :, None]
        return (x - per_channel(mean)) / np.sqrt(per_channel(var) + eps) * per_channel(weight) + per_channel(bias)

    def batch_norm_backward(self, x, dy, mean, var, weight, eps, batch_statistics):
        """-> (dx, dweight, dbias). With xhat = (x - mean) / s, s = sqrt(var + eps), M = N*L:

        dbias = sum of dy,  dweight = sum of dy * xhat        (over n and l, per channel)

        With running statistics (eval) mean and s are constants: dx = weight / s * dy.
        With batch statistics (training) they are functions of x, mean = sum(x) / M and
        var = sum((x - mean)^2) / M, so that d xhat_j / d x_i = ([i == j] - 1/M - xhat_i xhat_j / M) / s
        and, summing dy_j * weight * d xhat_j / d x_i over the channel's j:

            dx = weight / s * (dy - dbias / M - xhat * dweight / M)
        """
        def per_channel(v):
            return v[None, :, None]
        s = np.sqrt(per_channel(var) + eps)
        xhat = (x - per_channel(mean)) / s
        dbias = dy.sum(axis=(0, 2))
        dweight = (dy * xhat).sum(axis=(0, 2))
        g = dy
        if batch_statistics:
            m = x.shape[0] * x.shape[2]
            g = dy - (per_channel(dbias) + xhat * per_channel(dweight)) / m
        return per_channel(weight) / s * g, dweight, dbias

    # ------------------------------------------------------------------ activations
    def relu_forward(self, x, negative_slope):
        """y = x where x > 0, negative_slope * x elsewhere (0 gives the plain ReLU)."""
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))

    def relu_backward(self, x, dy, negative_slope):
        """dy where x > 0, negative_slope * dy elsewhere (the subgradient at 0 is the slope)."""
        return np.where(x > 0, dy, dy * dy.dtype.type(negative_slope))

    # ------------------------------------------------------------------ dropout
    def dropout_forward(self, x, threshold, scale, seed, offset):
        """Inverted dropout: y = x * scale where kept, 0 where dropped."""
        return np.where(dropout_mask(x.shape, threshold, seed, offset), x * scale, x.dtype.type(0))

    def dropout_backward(self, dy, threshold, scale, seed, offset):
        """The same mask (same seed and offset) times the same scale."""
        return np.where(dropout_mask(dy.shape, threshold, seed, offset), dy * scale, dy.dtype.type(0))

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

    def nll_loss_forward(self, log_probs, labels, weight, ignore_index):
        """loss[n, d] = -weight[y] * log_probs[n, y, d] with y = labels[n, d], counted[n, d] = weight[y]:
        what a sample costs, and how much it counts in the mean; both 0 where y == ignore_index."""
        counted = labels != ignore_index
        y = np.where(counted, labels, 0)                      # an ignored sample reads class 0, then counts 0
        picked = np.take_along_axis(log_probs, y[:, None, :], axis=1)[:, 0, :]
        w = np.where(counted, weight[y], 0).astype(log_probs.dtype)
        return np.where(counted, -w * picked, 0).astype(log_probs.dtype), w

    def nll_loss_backward(self, labels, weight, ignore_index, dloss, classes):
        """d loss[n, d] / d log_probs[n, c, d] = -weight[c] where c == labels[n, d] (and not ignored), else 0."""
        hit = (labels[:, None, :] == np.arange(classes)[None, :, None]) & (labels != ignore_index)[:, None, :]
        return np.where(hit, -weight[None, :, None] * dloss[:, None, :], 0).astype(dloss.dtype)

    def squared_error_forward(self, x, target):
        """(x - target)^2, element by element."""
        d = x - target
        return d * d

    def squared_error_backward(self, x, target, dloss):
        """d (x - target)^2 / dx = 2 (x - target)."""
        return 2 * (x - target) * dloss

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

    def adamw_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """AdamW (Loshchilov & Hutter, PyTorch's AdamW): the weights shrink by lr * weight_decay
        first (decoupled weight decay, not added to the gradient), then Adam's step on the gradient."""
        param *= 1 - lr * weight_decay
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1 ** step)
        v_hat = v / (1 - beta2 ** step)
        param -= lr * m_hat / (np.sqrt(v_hat) + eps)

    def rmsprop_update(self, param, grad, square_avg, grad_avg, buffer, lr, alpha, eps, weight_decay, momentum,
                       centered):
        """RMSprop as PyTorch has it: divide the gradient by a running root mean square of it.

        g = grad + weight_decay * param;  square_avg = alpha square_avg + (1 - alpha) g^2;
        avg = sqrt(square_avg - grad_avg^2) + eps when centered (grad_avg: the running mean of g),
        sqrt(square_avg) + eps otherwise; param -= lr * g / avg, or with momentum
        buffer = momentum buffer + g / avg, param -= lr * buffer.
        """
        g = grad + weight_decay * param
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        if centered:
            grad_avg *= alpha
            grad_avg += (1 - alpha) * g
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if momentum > 0:
            buffer *= momentum
            buffer += g / avg
            param -= lr * buffer
        else:
            param -= lr * g / avg
