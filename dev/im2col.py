"""im2col and col2im variants, checked against the NumPy reference, then timed on AlexNet's convolutions.

    python dev/im2col.py 7                       # the kernels csrc/im2col.cuh ships, on the CPU
    python dev/im2col.py 2 --threads 1           # Caffe's shape, one thread
    python dev/im2col.py 7 --device cuda         # on a GPU (needs CuPy)
    python dev/im2col.py 7 --batch 128 --repeats 20
    python dev/im2col.py 3                       # col2im scattering with atomic adds

The variants are in dev/im2col_variants.cuh. Each is first run on small shapes with
stride, asymmetric padding and dilation and compared with backends/reference.py's
im2col and col2im: every variant but 3 only copies and adds in the reference's order, so the
results must be equal bit for bit; variant 3's col2im adds a pixel's entries in the
order its threads reach it, so it must lie within the rounding bound of a sum in any
order. Then each of the paper's five convolutions (benchmarks/conv_bench.py's LAYERS)
is timed: the median of --repeats runs (wall clock, and CPU time, which a busy machine
disturbs less), and the bandwidth it reaches (bytes of cols written and x read, or the
other way round, per wall-clock second); col2im is then run twice more and the two
results compared bit for bit ("twice": same, or how many entries differ).
"""

import sys

from common import ROOT, check, parser, time_ms, to_device, to_numpy, variant_loader

import numpy as np

from minicnn.backends import reference
from minicnn.shapes import output_size

sys.path.insert(0, str(ROOT / "benchmarks"))
from conv_bench import LAYERS  # noqa: E402  the paper's AlexNet convolutions, written once

VARIANTS = {
    1: "the first kernels: one thread per entry of cols (im2col), all kh*kw taps tried (col2im)",
    2: "Caffe's shape: one thread per window (im2col), covering outputs only (col2im)",
    3: "im2col as 2; col2im scattering: one thread per window adding its entries into x, atomically",
    4: "both in MC_ROW_LOOP, a thread per entry on the GPU, whole rows on a host thread",
    5: "im2col as 4; col2im with one index per input row, adding each tap's run along it",
    6: "col2im as 5; im2col with one index per row of cols, copying runs of input rows",
    7: "as csrc/im2col.cuh: col2im as 5; im2col in MC_PLANE_LOOP, a plane per (c, ki, kj, n)",
}
KERNELS = {1: ("im2col_1", "col2im_1"), 2: ("im2col_2", "col2im_2"), 3: ("im2col_2", "col2im_3"),
           4: ("im2col_4", "col2im_4"), 5: ("im2col_4", "col2im"), 6: ("im2col_6", "col2im"),
           7: ("im2col", "col2im")}
HEADER = ROOT / "dev" / "im2col_variants.cuh"

# (N, C, H, W), kernel, stride, (top, bottom, left, right), dilation: shapes to check on
CHECKS = [
    ((2, 3, 9, 10), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 5, 11, 9), (3, 2), (2, 1), (1, 0, 2, 1), (2, 3)),
    ((1, 2, 7, 8), (4, 4), (3, 2), (0, 3, 2, 0), (1, 2)),
    ((3, 4, 15, 15), (11, 11), (4, 4), (0, 0, 0, 0), (1, 1)),
]


class Geometry:
    """One convolution's shapes, and the kernels' arguments after (count, source, destination)."""

    def __init__(self, x_shape, kernel, stride, padding, dilation):
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw) = kernel, stride, padding, dilation
        self.x_shape, self.kernel, self.stride, self.padding, self.dilation = x_shape, kernel, stride, padding, dilation
        oh, ow = output_size(h, kh, sh, (top, bottom), dh), output_size(w, kw, sw, (left, right), dw)
        self.cols_shape = (c * kh * kw, n, oh * ow)
        self.arguments = (n, c, h, w, kh, kw, sh, sw, top, left, dh, dw, oh, ow)
        self.windows = c * n * oh * ow                    # variant 2's im2col threads, variant 3's col2im ones

    def reference(self, x, cols):
        return (reference.im2col(x, self.kernel, self.stride, self.padding, self.dilation),
                reference.col2im(cols, self.x_shape, self.kernel, self.stride, self.padding, self.dilation))


def run_im2col(loader, variant, geometry, x, cols):
    # variant 1: one thread per entry; 4: one row per (c, ki, kj, n, oy)
    rows = cols.size // geometry.arguments[-1]                   # variants 4-6: one per (c, ki, kj, n, oy)
    planes = rows // geometry.arguments[-2]                      # variant 7: one per (c, ki, kj, n)
    count = {1: cols.size, 2: geometry.windows, 3: geometry.windows, 7: planes}.get(variant, rows)
    loader.run(KERNELS[variant][0], count, x, cols, *geometry.arguments)


def run_col2im(loader, variant, geometry, cols, x):
    if variant == 3:                      # scattering adds into x: zeros first (timed with it)
        x[...] = 0
        loader.run(KERNELS[variant][1], geometry.windows, cols, x, *geometry.arguments)
    else:                                 # gathering writes every pixel once (4: a row of them per index)
        loader.run(KERNELS[variant][1], x.size // x.shape[-1] if variant >= 4 else x.size, cols, x,
                   *geometry.arguments)


def col2im_tolerance(variant, geometry, cols):
    """0 (bit for bit) for a gather in the reference's order; for the scatter, the bound on two
    sums of the same m <= kh*kw terms in different orders: each within (m - 1) eps sum|terms|
    of the exact sum, so within 2 m eps sum|terms| of each other."""
    if variant != 3:
        return 0.0
    kh, kw = geometry.kernel
    absolute = reference.col2im(np.abs(cols), geometry.x_shape, geometry.kernel, geometry.stride, geometry.padding,
                                geometry.dilation)
    return float(2 * kh * kw * np.finfo(cols.dtype).eps * absolute.max())


def same_bits(a, b):
    """'same', or how many entries of a and b differ in their bits."""
    differ = int(np.count_nonzero(to_numpy(a).view(np.uint8).reshape(a.size, -1) !=
                                  to_numpy(b).view(np.uint8).reshape(b.size, -1)))
    return "same" if differ == 0 else f"{differ} differ"


def options():
    """The driver's command line: dev/common.py's options and --batch."""
    result = parser(__doc__.splitlines()[0], VARIANTS)
    result.add_argument("--batch", type=int, default=16, help="images per timed convolution")
    return result


def main(argv=None):
    args = options().parse_args(argv)
    loader = variant_loader(HEADER, KERNELS[args.variant], args)
    rng = np.random.default_rng(0)
    print(f"variant {args.variant}: {VARIANTS[args.variant]}")

    # 1. the same numbers as the reference, bit for bit, on small awkward shapes
    for x_shape, kernel, stride, padding, dilation in CHECKS:
        for dtype in (np.float32, np.float64):
            geometry = Geometry(x_shape, kernel, stride, padding, dilation)
            x = rng.standard_normal(x_shape).astype(dtype)
            cols = rng.standard_normal(geometry.cols_shape).astype(dtype)
            want_cols, want_x = geometry.reference(x, cols)
            ours_cols = to_device(np.full(geometry.cols_shape, np.nan, dtype), args)   # NaN: a missed entry shows
            run_im2col(loader, args.variant, geometry, to_device(x, args), ours_cols)
            ours_x = to_device(np.full(x_shape, np.nan, dtype), args)
            run_col2im(loader, args.variant, geometry, to_device(cols, args), ours_x)
            where = f"{x_shape} k{kernel} s{stride} p{padding} d{dilation} {np.dtype(dtype).name}"
            check(f"im2col {where}", ours_cols, want_cols)
            check(f"col2im {where}", ours_x, want_x, col2im_tolerance(args.variant, geometry, cols))

    # 2. the time on the paper's convolutions
    threads = f", {args.threads} threads" if args.device == "cpu" else ""
    print(f"\nAlexNet's convolutions, batch {args.batch}, float32, {args.device}{threads}; "
          f"median of {args.repeats}")
    print(f"{'layer':<6} {'im2col ms':>10} {'cpu ms':>7} {'GB/s':>6} {'col2im ms':>10} {'cpu ms':>7} {'GB/s':>6} "
          f"{'twice':>6}")
    for name, chw, _, k, s, p, _ in LAYERS:
        geometry = Geometry((args.batch,) + chw, (k, k), (s, s), (p, p, p, p), (1, 1))
        x = to_device(rng.standard_normal(geometry.x_shape).astype(np.float32), args)
        cols = to_device(np.zeros(geometry.cols_shape, np.float32), args)
        moved = 4 * (x.size + cols.size) / 1e9                 # GB read and written by either kernel
        forward, forward_cpu = time_ms(lambda: run_im2col(loader, args.variant, geometry, x, cols), args)
        backward, backward_cpu = time_ms(lambda: run_col2im(loader, args.variant, geometry, cols, x), args)
        # run to run: the same bits? (cols holds im2col's output, so windows overlap with values)
        first, again = x.copy(), x.copy()
        run_col2im(loader, args.variant, geometry, cols, first)
        run_col2im(loader, args.variant, geometry, cols, again)
        print(f"{name:<6} {forward:>10.2f} {forward_cpu:>7.2f} {moved / forward * 1e3:>6.1f} "
              f"{backward:>10.2f} {backward_cpu:>7.2f} {moved / backward * 1e3:>6.1f} {same_bits(first, again):>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
