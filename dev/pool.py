"""Max pooling forward and backward variants, checked against the NumPy reference, then timed on the networks' pooling layers.

    python dev/pool.py 3                       # the kernels csrc/pool.cuh ships, on the CPU
    python dev/pool.py 1 --threads 1           # the first kernels, one thread
    python dev/pool.py 2 --device cuda         # on a GPU (needs CuPy)

The variants are in dev/pool_variants.cuh. Each is first run on small shapes (tie-free
inputs: a shuffled linspace, overlapping and non-overlapping windows, padding, windows
clipped at the edges) in float32 and float64 and compared with backends/reference.py's
max_pool2d_forward and max_pool2d_backward, bit for bit: a maximum is exact, and every
variant adds each pixel's gradients in the reference's order. Then the paper's three
pooling layers (3x3 windows, stride 2) and the small network's first one are timed: the
median of --repeats runs, wall clock and CPU time.
"""

from common import ROOT, check, parser, time_ms, to_device, to_numpy, variant_loader

import numpy as np

from minicnn.backends import reference
from minicnn.shapes import pool_output_shape

VARIANTS = {
    1: "the first kernels: one thread per output (forward), per input pixel searching its windows (backward)",
    2: "both in MC_ROW_LOOP: per element on the GPU, whole rows on a host thread",
    3: "as csrc/pool.cuh: forward as 2; backward with one index per input row, collecting its outputs' gradients",
}
KERNELS = {1: ("max_pool_forward_1", "max_pool_backward_1"), 2: ("max_pool_forward", "max_pool_backward_2"),
           3: ("max_pool_forward", "max_pool_backward")}
HEADER = ROOT / "dev" / "pool_variants.cuh"

# (N, C, H, W), kernel, stride, (top, bottom, left, right) padding
CHECKS = [
    ((2, 3, 9, 10), (3, 3), (2, 2), (0, 0, 0, 0)),      # AlexNet's overlapping windows
    ((2, 2, 8, 7), (2, 2), (2, 2), (0, 0, 0, 0)),       # non-overlapping
    ((1, 3, 7, 9), (3, 2), (1, 2), (1, 1, 1, 0)),       # padding, stride 1 along one axis
    ((2, 1, 5, 5), (5, 5), (3, 3), (2, 2, 2, 2)),       # windows reaching well past the edges
]
# (name, (C, H, W)) of the inputs of the timed pooling layers, 3x3 windows, stride 2
LAYERS = [("small pool1", (32, 28, 28)), ("alexnet pool1", (96, 55, 55)), ("alexnet pool2", (256, 27, 27)),
          ("alexnet pool5", (256, 13, 13))]


def count(variant, x_shape, y_shape, backward):
    """The variant's count: outputs or input pixels (1), output or input rows (2, 3)."""
    shape = x_shape if backward else y_shape
    return int(np.prod(shape)) if variant == 1 else int(np.prod(shape[:3]))


def geometry(x_shape, y_shape, kernel, stride, padding):
    return (x_shape[2], x_shape[3], *kernel, *stride, padding[0], padding[2], y_shape[2], y_shape[3])


def run_forward(loader, variant, x, y, argmax, kernel, stride, padding):
    loader.run(KERNELS[variant][0], count(variant, x.shape, y.shape, False), x, y, argmax,
               *geometry(x.shape, y.shape, kernel, stride, padding))


def run_backward(loader, variant, dy, argmax, dx, kernel, stride, padding):
    loader.run(KERNELS[variant][1], count(variant, dx.shape, dy.shape, True), dy, argmax, dx,
               *geometry(dx.shape, dy.shape, kernel, stride, padding))


def options():
    """The driver's command line: dev/common.py's options and --batch."""
    result = parser(__doc__.splitlines()[0], VARIANTS)
    result.add_argument("--batch", type=int, default=16,
                        help="images per timed AlexNet layer (the small network's: four times as many)")
    return result


def main(argv=None):
    args = options().parse_args(argv)
    loader = variant_loader(HEADER, KERNELS[args.variant], args)
    rng = np.random.default_rng(0)
    ref = reference.ReferenceBackend()
    print(f"variant {args.variant}: {VARIANTS[args.variant]}")

    # 1. the reference's numbers, bit for bit, on small awkward shapes
    for x_shape, kernel, stride, padding in CHECKS:
        for dtype in (np.float32, np.float64):
            x = rng.permutation(np.linspace(-1, 1, int(np.prod(x_shape)))).reshape(x_shape).astype(dtype)
            want_y, want_argmax = ref.max_pool2d_forward(x, kernel, stride, padding)
            dy = rng.standard_normal(want_y.shape).astype(dtype)
            want_dx = ref.max_pool2d_backward(dy, want_argmax, x_shape, kernel, stride, padding)
            # NaN and -1 in every output: an entry the variant misses shows
            y = to_device(np.full(want_y.shape, np.nan, dtype), args)
            argmax = to_device(np.full(want_y.shape, -1, np.int64), args)
            run_forward(loader, args.variant, to_device(x, args), y, argmax, kernel, stride, padding)
            dx = to_device(np.full(x_shape, np.nan, dtype), args)
            run_backward(loader, args.variant, to_device(dy, args), to_device(want_argmax, args), dx, kernel,
                         stride, padding)
            where = f"{x_shape} k{kernel} s{stride} p{padding} {np.dtype(dtype).name}"
            check(f"forward y {where}", y, want_y)
            check(f"forward argmax {where}", argmax, want_argmax)
            check(f"backward {where}", dx, want_dx)

    # 2. the time on the networks' pooling layers
    threads = f", {args.threads} threads" if args.device == "cpu" else ""
    print(f"\n3x3/2 max pooling, batch {args.batch} (the small network's: {4 * args.batch}), float32, "
          f"{args.device}{threads}; median of {args.repeats}")
    print(f"{'layer':<14} {'input':<10} {'forward ms':>10} {'cpu ms':>7} {'backward ms':>11} {'cpu ms':>7}")
    for name, chw in LAYERS:
        x_shape = (4 * args.batch if name.startswith("small") else args.batch,) + chw
        y_shape = x_shape[:2] + pool_output_shape(x_shape, (3, 3), (2, 2), (0, 0, 0, 0))
        x = to_device(rng.standard_normal(x_shape).astype(np.float32), args)
        y, dy = (to_device(np.zeros(y_shape, np.float32), args) for _ in range(2))
        argmax = to_device(np.zeros(y_shape, np.int64), args)
        dx = to_device(np.zeros(x_shape, np.float32), args)
        forward, forward_cpu = time_ms(lambda: run_forward(loader, args.variant, x, y, argmax, (3, 3), (2, 2),
                                                           (0, 0, 0, 0)), args)
        backward, backward_cpu = time_ms(lambda: run_backward(loader, args.variant, dy, argmax, dx, (3, 3), (2, 2),
                                                              (0, 0, 0, 0)), args)
        print(f"{name:<14} {'x'.join(map(str, chw)):<10} {forward:>10.2f} {forward_cpu:>7.2f} "
              f"{backward:>11.2f} {backward_cpu:>7.2f}")
        assert np.isfinite(to_numpy(dx)).all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
