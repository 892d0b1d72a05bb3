"""The raw kernel bindings of minicnn._host check their arrays' sizes before a kernel runs.

A kernel trusts its count and shape arguments; the bindings must refuse a call whose
arrays are smaller than those arguments imply (a segfault or silent corruption
otherwise). For every kernel: a call with arrays of exactly the size needed runs,
and the same call with any one array one element short raises a ValueError naming
that array. (The CUDA bindings take raw pointers; there backends/kernels.py, which
allocates every buffer from the launch's shapes, guarantees the sizes.)
"""

import numpy as np
import pytest

_host = pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")

from minicnn.backends.sources import kernel_names  # noqa: E402


def f(n):
    return np.zeros(n, np.float64)


def i(n):
    return np.zeros(n, np.int64)


# kernel: (count, [arguments after count]); arrays are (name, array) pairs, each exactly the
# size the kernel touches. Shapes: N=2 images, C=3 channels, a 5x4 input, a 3x2 kernel with
# stride (1, 2) and padding (1, 0) -> a 5x2 output; pooling 5x5 -> 2x2 (3/2); 3 rows of 4 logits.
CASES = {
    # im2col: one plane per (c, ki, kj, n), of OH*OW entries; cols (C*kh*kw, N, OH*OW); dilation 1
    "im2col": (36, [("x", f(120)), ("cols", f(360)), 2, 3, 5, 4, 3, 2, 1, 2, 1, 0, 1, 1, 5, 2]),
    # col2im: one row per input row (n, c, y)
    "col2im": (30, [("cols", f(360)), ("x", f(120)), 2, 3, 5, 4, 3, 2, 1, 2, 1, 0, 1, 1, 5, 2]),
    # (N, O, L) = (2, 3, 4) to and from the GEMM's (O, N, L): one row per (n, o) or (o, n)
    "side_by_side_to_nchw": (6, [("y_side", f(24)), ("b", f(3)), ("y", f(24)), 2, 3, 4]),
    "nchw_to_side_by_side": (6, [("dy", f(24)), ("dy_side", f(24)), 2, 3, 4]),
    "bias_forward": (24, [("y", f(24)), ("b", f(3)), 3, 4]),
    "sum_rows": (12, [("x", f(24)), ("out", f(12)), 4, 2]),   # 6 rows of 4, two partial sums each
    "sum_cols": (4, [("x", f(24)), ("out", f(4)), 6]),
    # pooling: one row per output row (n, c, oy) forward; max pooling backward per input row (n, c, y)
    "max_pool_forward": (4, [("x", f(50)), ("y", f(8)), ("argmax", i(8)), 5, 5, 3, 3, 2, 2, 0, 0, 2, 2]),
    "max_pool_backward": (10, [("dy", f(8)), ("argmax", i(8)), ("dx", f(50)), 5, 5, 3, 3, 2, 2, 0, 0, 2, 2]),
    "avg_pool_forward": (8, [("x", f(50)), ("y", f(8)), 5, 5, 3, 3, 2, 2, 0, 0, 2, 2, 0, 0, 1]),
    "avg_pool_backward": (50, [("dy", f(8)), ("dx", f(50)), 5, 5, 3, 3, 2, 2, 0, 0, 2, 2, 0, 0, 1]),
    # batch norm over (N, C, L) = (2, 3, 4): one thread per channel for the reductions
    "batch_norm_statistics": (3, [("x", f(24)), ("mean", f(3)), ("var", f(3)), 2, 3, 4]),
    "batch_norm_forward": (24, [("x", f(24)), ("mean", f(3)), ("var", f(3)), ("weight", f(3)), ("bias", f(3)),
                                ("y", f(24)), 3, 4, 1e-5]),
    "batch_norm_backward_reduce": (3, [("x", f(24)), ("dy", f(24)), ("mean", f(3)), ("var", f(3)),
                                       ("dweight", f(3)), ("dbias", f(3)), 2, 3, 4, 1e-5]),
    "batch_norm_backward": (24, [("x", f(24)), ("dy", f(24)), ("mean", f(3)), ("var", f(3)), ("weight", f(3)),
                                 ("dweight", f(3)), ("dbias", f(3)), ("dx", f(24)), 3, 4, 8, 1e-5, 1]),
    # LRN: the window sums and backward's sums by planes (n, c) (6 of 4 pixels), the rest per element
    "lrn_scale": (6, [("x", f(24)), ("scale", f(24)), 3, 4, 5, 1e-4, 2.0]),
    "lrn_forward": (24, [("x", f(24)), ("scale", f(24) + 2), ("y", f(24)), 0.75]),
    "lrn_backward_terms": (24, [("y", f(24)), ("scale", f(24) + 2), ("dy", f(24)), ("ratio", f(24)), ("dx", f(24)),
                                0.75]),
    "lrn_backward": (6, [("x", f(24)), ("ratio", f(24)), ("dx", f(24)), 3, 4, 5, 1e-4, 0.75]),
    "relu_forward": (10, [("x", f(10)), ("y", f(10)), 0.0]),
    "relu_backward": (10, [("x", f(10)), ("dy", f(10)), ("dx", f(10)), 0.0]),
    "dropout_forward": (10, [("x", f(10)), ("y", f(10)), np.uint32(1 << 23), 2.0, np.uint32(7), 40]),
    "dropout_backward": (10, [("dy", f(10)), ("dx", f(10)), np.uint32(1 << 23), 2.0, np.uint32(7), 40]),
    "softmax_partials": (6, [("logits", f(12)), ("part_max", f(6)), ("part_sum", f(6)), 4, 2]),
    "softmax_cross_entropy_forward": (3, [("logits", f(12)), ("labels", i(3)), ("part_max", f(6)),
                                          ("part_sum", f(6) + 1), ("row_max", f(3)), ("log_sum", f(3)),
                                          ("row_loss", f(3)), 4, 2]),
    "softmax_probs": (12, [("logits", f(12)), ("row_max", f(3)), ("log_sum", f(3)), ("probs", f(12)), 4]),
    "mean_forward": (1, [("partial", f(3)), ("loss", f(1)), 3, 6]),
    "softmax_cross_entropy_backward": (12, [("probs", f(12)), ("labels", i(3)), ("dloss", f(1)),
                                            ("dlogits", f(12)), 3, 4]),
    # nll_loss over (N, C, D) = (2, 3, 2): 4 samples
    "nll_loss_forward": (4, [("log_probs", f(12)), ("labels", i(4)), ("weight", f(3)), ("loss", f(4)),
                             ("counted", f(4)), 3, 2, -100]),
    "nll_loss_backward": (12, [("labels", i(4)), ("weight", f(3)), ("dloss", f(4)), ("dlog_probs", f(12)),
                               3, 2, -100]),
    "squared_error_forward": (10, [("x", f(10)), ("target", f(10)), ("out", f(10))]),
    "squared_error_backward": (10, [("x", f(10)), ("target", f(10)), ("dloss", f(10)), ("dx", f(10))]),
    "sgd_update": (5, [("param", f(5)), ("grad", f(5)), ("velocity", f(5)), 0.1, 0.9, 0.0, 0]),
    "adam_update": (5, [("param", f(5)), ("grad", f(5)), ("m", f(5)), ("v", f(5)), 1e-3, 0.9, 0.999,
                        0.1, 0.001, 0.1, 0.001, 1e-8, 0.0]),
    "adamw_update": (5, [("param", f(5)), ("grad", f(5)), ("m", f(5)), ("v", f(5)), 1e-3, 0.9, 0.999,
                         0.1, 0.001, 0.1, 0.001, 1e-8, 1.0]),
    "rmsprop_update": (5, [("param", f(5)), ("grad", f(5)), ("square_avg", f(5)), ("grad_avg", f(5)),
                           ("buffer", f(5)), 1e-2, 0.99, 0.01, 1e-8, 0.0, 0.9, 1]),
}


def _call(name, count, args):
    values = [a[1].copy() if isinstance(a, tuple) else a for a in args]
    getattr(_host, f"{name}_float64")(count, *values)


def test_every_kernel_has_a_case():
    assert set(CASES) == set(kernel_names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_sizes_run(name):
    count, args = CASES[name]
    _call(name, count, args)


@pytest.mark.parametrize("name, position", [(name, p) for name, (_, args) in sorted(CASES.items())
                                            for p, a in enumerate(args) if isinstance(a, tuple)])
def test_one_element_short_is_refused(name, position):
    count, args = CASES[name]
    array_name, array = args[position]
    short = list(args)
    short[position] = (array_name, array[:-1])
    with pytest.raises(ValueError, match=rf"minicnn\._host\.{name}: array '{array_name}' holds {len(array) - 1} "):
        _call(name, count, short)


def test_a_count_far_beyond_the_arrays_raises_instead_of_crashing():
    x, y = np.zeros(10, np.float32), np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="holds 10 elements.*touch 10000000"):
        _host.relu_forward_float32(10_000_000, x, y, 0.0)
    assert not y.any()   # nothing was written


def test_a_zero_divisor_an_overflowing_shape_and_slices_wider_than_a_row_are_refused():
    with pytest.raises(ValueError, match="argument 'N' must be >= 1, got 0"):
        _host.im2col_float64(9, f(9), f(9), 0, 1, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="overflow"):
        _host.im2col_float64(9, f(9), f(9), 1, 1, 2 ** 40, 2 ** 40, 3, 3, 1, 1, 0, 0, 1, 1, 3, 3)
    with pytest.raises(ValueError, match=r"argument 'S' \(5\) must be <= 'K' \(4\)"):
        _host.softmax_partials_float64(10, f(12), f(10), f(10), 4, 5)   # slice 4 would start past the row
    with pytest.raises(ValueError, match=r"argument 'count' \(4\) must be <= 'C' \(3\)"):
        _host.batch_norm_statistics_float64(4, f(24), f(4), f(4), 2, 3, 4)   # a 4th channel is not there
    with pytest.raises(ValueError, match=r"count \(20\) must be a whole number of images of O\*L = 12"):
        _host.bias_forward_float64(20, f(24), f(3), 3, 4)   # bias_forward walks whole images: 20 would skip 8
    _host.relu_forward_float64(0, f(0), f(0), 0.0)   # no work: nothing to check
