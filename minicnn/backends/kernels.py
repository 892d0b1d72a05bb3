"""KernelBackend: the backend interface (backends/base.py) written once on top of the csrc kernels.

The kernels compiled for the CPU (backends/host.py, on NumPy arrays) and on the
GPU (backends/cuda.py, on CuPy arrays, through RawKernel or pybind11) differ only
in three primitives, which a *loader* provides:

    loader.xp                                numpy or cupy: where arrays live
    loader.run(kernel, count, *args)         run a csrc kernel over count indices;
                                             args are the kernel's arguments after
                                             count, in its order: arrays for pointers,
                                             Python ints for mc_index, Python floats
                                             for T, numpy.uint32 for unsigned int
    loader.gemm(a, b, out, trans_a, trans_b) out = op(a) @ op(b), batched over a
                                             leading axis (a may be unbatched)
    loader.name                              "host", "rawkernel" or "pybind11"

Everything else - the order of kernel launches, the GEMM shapes, the buffers -
lives here, so what runs on the CPU is what runs on the GPU. What each method
computes is defined by backends/reference.py.
"""

import threading

import numpy as np

from ..shapes import four_pads, output_size, pool_output_shape
from .base import Backend

# im2col is run over chunks of the batch whose column buffer holds at most this
# many entries (512 MiB in float32): the whole of AlexNet's batch of 128 for most
# layers, two chunks for conv2, and bounded memory for larger batches.
COLS_BUDGET = 1 << 27

# The forward's columns are kept for the weight gradient's GEMM, instead of computed again by
# im2col in backward, when they hold at most this many entries (64 MiB in float32) and one
# chunk holds the batch: every layer of the small network, conv3-conv5 of AlexNet at batch 16.
# Larger ones would raise a step's peak memory more than a second im2col costs.
KEEP_COLUMNS = 1 << 24

# How many neighbouring threads share a row in the row reductions (sum_rows,
# softmax_partials): a warp's 32 threads then read 32 neighbouring numbers at once.
ROW_SPLIT = 32

# the kernels' element types T, each with the name its instantiations carry (relu_forward_float32)
FLOAT_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def float_dtype_of(args):
    """The element type T of a kernel launch: that of its first floating-point array."""
    for a in args:
        if hasattr(a, "shape") and a.dtype in FLOAT_DTYPES:
            return a.dtype
    raise TypeError("a kernel launch needs at least one float32 or float64 array")


class KernelBackend(Backend):
    """The backend interface on a loader's primitives: one instance per loader."""

    def __init__(self, loader, device):
        self.loader = loader
        self.xp = loader.xp
        self.device = device                # "cpu" or "cuda"
        self.name = "kernels" if device == "cpu" else f"cuda-{loader.name}"
        self._buffers = threading.local()     # workspaces (see _workspace), one set per thread

    # ------------------------------------------------------------------ argument hygiene
    def _array(self, op, name, a, dtype=None, integer=False):
        """a as a C-contiguous array of this backend's device, or a clear error.

        A non-contiguous view is copied (kernels index flat memory); an array on the
        other device, or of the wrong dtype, never reaches a kernel.
        """
        if not isinstance(a, self.xp.ndarray):
            where = "cpu" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{op}: argument '{name}' is a {where} array, but this op runs on {self.device}")
        if integer:
            if a.dtype.kind not in "iu":
                raise TypeError(f"{op}: argument '{name}' must hold integers, got {a.dtype}")
            a = a.astype(np.int64, copy=False)
        else:
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got {a.dtype}")
            if dtype is not None and a.dtype != dtype:
                raise TypeError(f"{op}: argument '{name}' is {a.dtype} but the other arguments are {dtype}")
        return self.xp.ascontiguousarray(a)

    def _inplace(self, op, name, a, dtype):
        """An array the kernel updates in place (optimizer state), as a contiguous array
        of dtype; when that takes a copy, _write_back puts the result where it belongs."""
        if not isinstance(a, self.xp.ndarray) or a.dtype != dtype:
            raise TypeError(f"{op}: argument '{name}' must be a {dtype} array on {self.device}, "
                            f"got {getattr(a, 'dtype', type(a).__name__)}")
        return self.xp.ascontiguousarray(a)

    @staticmethod
    def _write_back(original, work):
        if work is not original:
            original[...] = work

    def _chunk(self, n, cols_per_image):
        """How many images one im2col chunk holds (at least one)."""
        return max(1, min(n, COLS_BUDGET // max(1, cols_per_image)))

    def _workspace(self, name, shape, dtype):
        """A scratch array for one step of one op (columns, a reordered gradient), reused
        across calls instead of allocated each time: the memory grows to the largest
        request and stays. Per thread, so two threads never share one."""
        size = int(np.prod(shape))
        buffers = vars(self._buffers)          # this thread's own dict
        buffer = buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = buffers[(name, dtype)] = self.xp.empty((size,), dtype=dtype)
        return buffer[:size].reshape(shape)

    # ------------------------------------------------------------------ convolution
    @staticmethod
    def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
        """The im2col/col2im arguments after (count, source, destination, N): C, H, W, kh, kw,
        sh, sw, pad_top, pad_left, dh, dw, OH, OW."""
        _, c, h, wd = x_shape
        kh, kw = w_shape[2:]
        (sh, sw), (top, bottom, left, right), (dh, dw) = stride, padding, dilation
        oh, ow = output_size(h, kh, sh, (top, bottom), dh), output_size(wd, kw, sw, (left, right), dw)
        return (c, h, wd, kh, kw, sh, sw, top, left, dh, dw, oh, ow)

    def conv2d_forward(self, x, w, b, stride, padding, groups, dilation, keep=None):
        """The interface's conv2d_forward; ``keep``, a dict, receives the im2col columns ("cols")
        for conv2d_backward when they are small enough to keep (KEEP_COLUMNS)."""
        op = "conv2d"
        x = self._array(op, "x", x)
        w = self._array(op, "weight", w, x.dtype)
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        geometry = self._conv_geometry(x.shape, w.shape, stride, padding, dilation)
        oh, ow = geometry[-2:]
        g, og, k, L = groups, o // groups, cg * kh * kw, oh * ow
        xp, run = self.xp, self.loader.run
        b = xp.zeros((o,), dtype=x.dtype) if b is None else self._array(op, "bias", b, x.dtype)
        y = xp.empty((n, o, oh, ow), dtype=x.dtype)
        wg = w.reshape(g, og, k)
        step = self._chunk(n, c * kh * kw * L)
        keeping = keep is not None and step >= n and c * kh * kw * n * L <= KEEP_COLUMNS
        # a chunk of images at a time: im2col, one GEMM per group (batched), back to NCHW with the bias
        for n0 in range(0, n, step):
            nc = min(step, n - n0)
            shape = (g, k, nc * L)                                         # rows (c, ki, kj), columns (n, oy, ox)
            cols = xp.empty(shape, dtype=x.dtype) if keeping else self._workspace("cols", shape, x.dtype)
            run("im2col", c * kh * kw * nc, x[n0:n0 + nc], cols, nc, *geometry)   # one plane per (c, ki, kj, n)
            y_side = self._workspace("y_side", (g, og, nc * L), x.dtype)
            self.loader.gemm(wg, cols, y_side, False, False)               # y_g = w_g @ cols_g
            run("side_by_side_to_nchw", nc * o, y_side, b, y[n0:n0 + nc], nc, o, L)     # one row per (n, o)
        if keeping:
            keep["cols"] = cols
        return y

    def conv2d_backward(self, x, w, dy, stride, padding, groups, dilation, need_dx=True, need_dw=True,
                        need_db=True, kept=None):
        """The interface's conv2d_backward; ``kept``: the dict conv2d_forward filled (its "cols", if
        any, are im2col(x) of the whole batch, so the weight gradient needs no im2col here)."""
        op = "conv2d backward"
        x = self._array(op, "x", x)
        w = self._array(op, "weight", w, x.dtype)
        dy = self._array(op, "grad_output", dy, x.dtype)
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        geometry = self._conv_geometry(x.shape, w.shape, stride, padding, dilation)
        oh, ow = geometry[-2:]
        g, og, k, L = groups, o // groups, cg * kh * kw, oh * ow
        xp, run, gemm = self.xp, self.loader.run, self.loader.gemm
        wg = w.reshape(g, og, k)
        dx = dw_t = db = None
        if need_dx:
            dx = xp.empty_like(x)
        if need_dw:
            dw_t = xp.zeros((g, k, og), dtype=x.dtype)             # dw transposed; stays 0 for an empty batch
        step = self._chunk(n, c * kh * kw * L)
        for n0 in range(0, n if (need_dx or need_dw) else 0, step):
            nc = min(step, n - n0)
            dy_side = self._workspace("dy_side", (g, og, nc * L), x.dtype)     # dy with the batch side by side
            run("nchw_to_side_by_side", o * nc, dy[n0:n0 + nc], dy_side, nc, o, L)
            cols = self._workspace("cols", (g, k, nc * L), x.dtype)
            if need_dw:
                # backward weights: dw_g^T (k, og) = cols_g (k, N*L) @ dy_g^T (N*L, og). The transposed
                # product is the same numbers (the long N*L side is summed over either way), but
                # multi-threaded OpenBLAS ran dy_g @ cols_g^T many times slower on some of these shapes
                columns = (kept or {}).get("cols")
                if columns is None:
                    columns = cols
                    run("im2col", c * kh * kw * nc, x[n0:n0 + nc], columns, nc, *geometry)
                part = dw_t if n0 == 0 else self._workspace("dw_part", dw_t.shape, x.dtype)
                gemm(columns, dy_side, part, False, True)
                if part is not dw_t:
                    dw_t += part
            if need_dx:
                # backward data: dcols_g (k, N*L) = w_g^T (k, og) @ dy_g (og, N*L), then col2im
                gemm(wg, dy_side, cols, True, False)
                run("col2im", nc * c * h, cols, dx[n0:n0 + nc], nc, *geometry)        # one row per (n, c, y)
        dw = None if dw_t is None else xp.ascontiguousarray(dw_t.transpose(0, 2, 1)).reshape(w.shape)
        if need_db:
            db = self._bias_grad(dy.reshape(n, o, L))
        return dx, dw, db

    def _bias_grad(self, dy):
        """db[o] = sum over n and l of dy[n, o, l]: rows (n, o) first, then the batch."""
        n, o, L = dy.shape
        per_row = self._sum_rows(dy.reshape(n * o, L)).reshape(n, o)
        db = self.xp.empty((o,), dtype=dy.dtype)
        self.loader.run("sum_cols", o, per_row, db, n)
        return db

    def _sum_rows(self, x):
        """x: (R, L) -> (R,), the sum of each row: ROW_SPLIT threads per row, then one."""
        rows, length = x.shape
        split = min(ROW_SPLIT, length)
        out = self.xp.empty((rows,), dtype=x.dtype)
        if split <= 1:
            self.loader.run("sum_rows", rows, x, out, length, 1)
            return out
        partial = self.xp.empty((rows, split), dtype=x.dtype)
        self.loader.run("sum_rows", rows * split, x, partial, length, split)
        self.loader.run("sum_rows", rows, partial, out, split, 1)
        return out

    # ------------------------------------------------------------------ linear
    def linear_forward(self, x, w, b):
        op = "linear"
        x = self._array(op, "x", x)
        w = self._array(op, "weight", w, x.dtype)
        y = self.xp.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
        self.loader.gemm(x, w, y, False, True)                    # y = x @ w^T
        if b is not None:
            b = self._array(op, "bias", b, x.dtype)
            self.loader.run("bias_forward", y.size, y, b, w.shape[0], 1)
        return y

    def linear_backward(self, x, w, dy, need_dx=True, need_dw=True, need_db=True):
        op = "linear backward"
        x = self._array(op, "x", x)
        w = self._array(op, "weight", w, x.dtype)
        dy = self._array(op, "grad_output", dy, x.dtype)
        dx = dw = db = None
        if need_dx:
            dx = self.xp.empty(x.shape, dtype=x.dtype)
            self.loader.gemm(dy, w, dx, False, False)             # dx = dy @ w
        if need_dw:
            dw = self.xp.empty(w.shape, dtype=x.dtype)
            self.loader.gemm(dy, x, dw, True, False)              # dw = dy^T @ x
        if need_db:                                               # db = the column sums of dy
            db = self.xp.empty((w.shape[0],), dtype=x.dtype)
            self.loader.run("sum_cols", w.shape[0], dy, db, dy.shape[0])
        return dx, dw, db

    # ------------------------------------------------------------------ pooling
    @staticmethod
    def _pool_geometry(x_shape, kernel, stride, padding, out):
        """The kernels' shape arguments: H, W, kh, kw, sh, sw, top, left, OH, OW."""
        (kh, kw), (sh, sw), (top, _, left, _) = kernel, stride, four_pads(padding)
        return (x_shape[2], x_shape[3], kh, kw, sh, sw, top, left, out[0], out[1])

    def max_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False):
        x = self._array("max_pool2d", "x", x)
        out = pool_output_shape(x.shape, kernel, stride, padding, ceil_mode)
        y = self.xp.empty(x.shape[:2] + out, dtype=x.dtype)
        argmax = self.xp.empty(y.shape, dtype=np.int64)
        # one row per output row (n, c, oy)
        self.loader.run("max_pool_forward", x.shape[0] * x.shape[1] * out[0], x, y, argmax,
                        *self._pool_geometry(x.shape, kernel, stride, padding, out))
        return y, argmax

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel, stride, padding):
        op = "max_pool2d backward"
        dy = self._array(op, "grad_output", dy)
        argmax = self._array(op, "argmax", argmax, integer=True)
        dx = self.xp.empty(tuple(x_shape), dtype=dy.dtype)
        geo = self._pool_geometry(x_shape, kernel, stride, padding, dy.shape[2:])
        rows = x_shape[0] * x_shape[1] * x_shape[2]                 # one per input row (n, c, y)
        self.loader.run("max_pool_backward", rows, dy, argmax, dx, *geo)
        return dx

    def avg_pool2d_forward(self, x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
        x = self._array("avg_pool2d", "x", x)
        out = pool_output_shape(x.shape, kernel, stride, padding, ceil_mode)
        y = self.xp.empty(x.shape[:2] + out, dtype=x.dtype)
        _, bottom, _, right = four_pads(padding)
        self.loader.run("avg_pool_forward", y.size, x, y, *self._pool_geometry(x.shape, kernel, stride, padding, out),
                        bottom, right, int(bool(count_include_pad)))
        return y

    def avg_pool2d_backward(self, dy, x_shape, kernel, stride, padding, count_include_pad=True):
        dy = self._array("avg_pool2d backward", "grad_output", dy)
        dx = self.xp.empty(tuple(x_shape), dtype=dy.dtype)
        _, bottom, _, right = four_pads(padding)
        self.loader.run("avg_pool_backward", dx.size, dy, dx,
                        *self._pool_geometry(x_shape, kernel, stride, padding, dy.shape[2:]),
                        bottom, right, int(bool(count_include_pad)))
        return dx

    # ------------------------------------------------------------------ LRN
    def lrn_forward(self, x, size, alpha, beta, k):
        x = self._array("local_response_norm", "x", x)
        y = self.xp.empty_like(x)
        scale = self.xp.empty_like(x)
        n, c = x.shape[:2]
        hw = x.size // max(1, n * c)
        # the window sums (one row per plane (n, c)), then y = x * scale^-beta per element
        self.loader.run("lrn_scale", n * c, x, scale, c, hw, int(size), float(alpha), float(k))
        self.loader.run("lrn_forward", x.size, x, scale, y, float(beta))
        return y, scale

    def lrn_backward(self, x, y, scale, dy, size, alpha, beta, k):
        op = "local_response_norm backward"
        x = self._array(op, "x", x)
        y = self._array(op, "y", y, x.dtype)
        scale = self._array(op, "scale", scale, x.dtype)
        dy = self._array(op, "grad_output", dy, x.dtype)
        dx = self.xp.empty_like(x)
        n, c = x.shape[:2]
        hw = x.size // max(1, n * c)
        # per element dx = dy * scale^-beta and ratio = dy * y / scale; then dx -= 2 alpha beta x * window sums
        ratio = self._workspace("lrn_ratio", x.shape, x.dtype)
        self.loader.run("lrn_backward_terms", x.size, y, scale, dy, ratio, dx, float(beta))
        self.loader.run("lrn_backward", n * c, x, ratio, dx, c, hw, int(size), float(alpha), float(beta))
        return dx

    # ------------------------------------------------------------------ batch normalization
    def batch_norm_statistics(self, x):
        x = self._array("batch_norm", "x", x)
        n, c, l = x.shape
        mean = self.xp.empty((c,), dtype=x.dtype)
        var = self.xp.empty((c,), dtype=x.dtype)
        self.loader.run("batch_norm_statistics", c, x, mean, var, n, c, l)
        return mean, var

    def batch_norm_forward(self, x, mean, var, weight, bias, eps):
        op = "batch_norm"
        x = self._array(op, "x", x)
        mean, var, weight, bias = (self._array(op, name, a, x.dtype) for name, a in
                                   (("mean", mean), ("var", var), ("weight", weight), ("bias", bias)))
        y = self.xp.empty_like(x)
        self.loader.run("batch_norm_forward", x.size, x, mean, var, weight, bias, y, x.shape[1], x.shape[2],
                        float(eps))
        return y

    def batch_norm_backward(self, x, dy, mean, var, weight, eps, batch_statistics):
        op = "batch_norm backward"
        x = self._array(op, "x", x)
        dy = self._array(op, "grad_output", dy, x.dtype)
        mean, var, weight = (self._array(op, name, a, x.dtype) for name, a in
                             (("mean", mean), ("var", var), ("weight", weight)))
        n, c, l = x.shape
        dweight = self.xp.empty((c,), dtype=x.dtype)
        dbias = self.xp.empty((c,), dtype=x.dtype)
        self.loader.run("batch_norm_backward_reduce", c, x, dy, mean, var, dweight, dbias, n, c, l, float(eps))
        dx = self.xp.empty_like(x)
        self.loader.run("batch_norm_backward", x.size, x, dy, mean, var, weight, dweight, dbias, dx, c, l, n * l,
                        float(eps), int(bool(batch_statistics)))
        return dx, dweight, dbias

    # ------------------------------------------------------------------ activations, dropout
    def relu_forward(self, x, negative_slope):
        x = self._array("relu", "x", x)
        y = self.xp.empty_like(x)
        self.loader.run("relu_forward", x.size, x, y, float(negative_slope))
        return y

    def relu_backward(self, x, dy, negative_slope):
        x = self._array("relu backward", "x", x)
        dy = self._array("relu backward", "grad_output", dy, x.dtype)
        dx = self.xp.empty_like(dy)
        self.loader.run("relu_backward", x.size, x, dy, dx, float(negative_slope))
        return dx

    def dropout_forward(self, x, threshold, scale, seed, offset):
        x = self._array("dropout", "x", x)
        y = self.xp.empty_like(x)
        self.loader.run("dropout_forward", x.size, x, y, np.uint32(threshold), float(scale), np.uint32(seed),
                        int(offset))
        return y

    def dropout_backward(self, dy, threshold, scale, seed, offset):
        dy = self._array("dropout backward", "grad_output", dy)
        dx = self.xp.empty_like(dy)
        self.loader.run("dropout_backward", dy.size, dy, dx, np.uint32(threshold), float(scale), np.uint32(seed),
                        int(offset))
        return dx

    # ------------------------------------------------------------------ loss
    def softmax_cross_entropy_forward(self, logits, labels):
        op = "cross_entropy"
        logits = self._array(op, "logits", logits)
        labels = self._array(op, "labels", labels, integer=True)
        n, k = logits.shape
        xp, run, dtype = self.xp, self.loader.run, logits.dtype
        split = min(ROW_SPLIT, k)
        # each row's max and sum of exponentials in `split` slices, then merged per row
        part_max, part_sum = xp.empty((n, split), dtype=dtype), xp.empty((n, split), dtype=dtype)
        run("softmax_partials", n * split, logits, part_max, part_sum, k, split)
        row_max, log_sum, row_loss = (xp.empty((n,), dtype=dtype) for _ in range(3))
        run("softmax_cross_entropy_forward", n, logits, labels, part_max, part_sum, row_max, log_sum, row_loss,
            k, split)
        probs = xp.empty_like(logits)
        run("softmax_probs", probs.size, logits, row_max, log_sum, probs, k)
        # the batch mean: the row losses' sum in slices (sum_rows over (1, N)), then one thread
        split = min(ROW_SPLIT, n)
        partial = xp.empty((split,), dtype=dtype)
        run("sum_rows", split, row_loss, partial, n, split)
        loss = xp.empty((1,), dtype=dtype)
        run("mean_forward", 1, partial, loss, split, n)
        return loss.reshape(()), probs

    def softmax_cross_entropy_backward(self, probs, labels, dloss):
        op = "cross_entropy backward"
        probs = self._array(op, "probs", probs)
        labels = self._array(op, "labels", labels, integer=True)
        # dloss may be a number or a 0-d array of this device; the kernel reads it from memory
        if isinstance(dloss, self.xp.ndarray):
            dloss = self.xp.ascontiguousarray(dloss.astype(probs.dtype, copy=False)).reshape(1)
        else:
            dloss = self.xp.full((1,), dloss, dtype=probs.dtype)
        n, k = probs.shape
        dlogits = self.xp.empty_like(probs)
        self.loader.run("softmax_cross_entropy_backward", probs.size, probs, labels, dloss, dlogits, n, k)
        return dlogits

    def nll_loss_forward(self, log_probs, labels, weight, ignore_index):
        op = "nll_loss"
        log_probs = self._array(op, "log_probs", log_probs)
        labels = self._array(op, "labels", labels, integer=True)
        weight = self._array(op, "weight", weight, log_probs.dtype)
        n, c, d = log_probs.shape
        loss = self.xp.empty((n, d), dtype=log_probs.dtype)
        counted = self.xp.empty((n, d), dtype=log_probs.dtype)
        self.loader.run("nll_loss_forward", n * d, log_probs, labels, weight, loss, counted, c, d, int(ignore_index))
        return loss, counted

    def nll_loss_backward(self, labels, weight, ignore_index, dloss, classes):
        op = "nll_loss backward"
        dloss = self._array(op, "grad_output", dloss)
        labels = self._array(op, "labels", labels, integer=True)
        weight = self._array(op, "weight", weight, dloss.dtype)
        n, d = labels.shape
        dlog_probs = self.xp.empty((n, classes, d), dtype=dloss.dtype)
        self.loader.run("nll_loss_backward", dlog_probs.size, labels, weight, dloss, dlog_probs, classes, d,
                        int(ignore_index))
        return dlog_probs

    def squared_error_forward(self, x, target):
        x = self._array("mse_loss", "x", x)
        target = self._array("mse_loss", "target", target, x.dtype)
        out = self.xp.empty_like(x)
        self.loader.run("squared_error_forward", x.size, x, target, out)
        return out

    def squared_error_backward(self, x, target, dloss):
        op = "mse_loss backward"
        x = self._array(op, "x", x)
        target = self._array(op, "target", target, x.dtype)
        dloss = self._array(op, "grad_output", dloss, x.dtype)
        dx = self.xp.empty_like(x)
        self.loader.run("squared_error_backward", x.size, x, target, dloss, dx)
        return dx

    # ------------------------------------------------------------------ optimizer updates
    def sgd_update(self, param, grad, velocity, lr, momentum, weight_decay, nesterov):
        op = "sgd_update"
        if velocity is None:
            if momentum != 0:
                raise ValueError(f"{op}: momentum {momentum} needs a velocity buffer")
            velocity = param            # never read nor written when momentum is 0
        p = self._inplace(op, "param", param, param.dtype)
        v = p if velocity is param else self._inplace(op, "velocity", velocity, param.dtype)
        grad = self._array(op, "grad", grad, param.dtype)
        self.loader.run("sgd_update", p.size, p, grad, v, float(lr), float(momentum),
                        float(weight_decay), int(bool(nesterov)))
        self._write_back(param, p)
        self._write_back(velocity, v)

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        op = "adam_update"
        p = self._inplace(op, "param", param, param.dtype)
        mw = self._inplace(op, "m", m, param.dtype)
        vw = self._inplace(op, "v", v, param.dtype)
        grad = self._array(op, "grad", grad, param.dtype)
        # the same double-precision scalars as the NumPy reference computes
        self.loader.run("adam_update", p.size, p, grad, mw, vw, float(lr), float(beta1), float(beta2),
                        1.0 - beta1, 1.0 - beta2, 1.0 - beta1 ** step, 1.0 - beta2 ** step,
                        float(eps), float(weight_decay))
        for original, work in ((param, p), (m, mw), (v, vw)):
            self._write_back(original, work)

    def adamw_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        op = "adamw_update"
        p = self._inplace(op, "param", param, param.dtype)
        mw = self._inplace(op, "m", m, param.dtype)
        vw = self._inplace(op, "v", v, param.dtype)
        grad = self._array(op, "grad", grad, param.dtype)
        # the same double-precision scalars as the NumPy reference computes
        self.loader.run("adamw_update", p.size, p, grad, mw, vw, float(lr), float(beta1), float(beta2),
                        1.0 - beta1, 1.0 - beta2, 1.0 - beta1 ** step, 1.0 - beta2 ** step,
                        float(eps), 1.0 - lr * weight_decay)
        for original, work in ((param, p), (m, mw), (v, vw)):
            self._write_back(original, work)

    def rmsprop_update(self, param, grad, square_avg, grad_avg, buffer, lr, alpha, eps, weight_decay, momentum,
                       centered):
        op = "rmsprop_update"
        if centered and grad_avg is None:
            raise ValueError(f"{op}: centered RMSprop needs a grad_avg buffer")
        if momentum > 0 and buffer is None:
            raise ValueError(f"{op}: momentum {momentum} needs a momentum buffer")
        p = self._inplace(op, "param", param, param.dtype)
        sq = self._inplace(op, "square_avg", square_avg, param.dtype)
        # a buffer the settings leave unused is never read nor written: the parameter stands in
        ga = p if grad_avg is None else self._inplace(op, "grad_avg", grad_avg, param.dtype)
        buf = p if buffer is None else self._inplace(op, "buffer", buffer, param.dtype)
        grad = self._array(op, "grad", grad, param.dtype)
        self.loader.run("rmsprop_update", p.size, p, grad, sq, ga, buf, float(lr), float(alpha), 1.0 - alpha,
                        float(eps), float(weight_decay), float(momentum), int(bool(centered)))
        for original, work in ((param, p), (square_avg, sq), (grad_avg, ga), (buffer, buf)):
            if original is not None:
                self._write_back(original, work)

