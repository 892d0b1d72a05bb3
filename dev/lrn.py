"""LRN forward and backward variants, checked against the NumPy reference, then timed on AlexNet's two LRN layers.

    python dev/lrn.py 5                       # the kernels csrc/lrn.cuh ships, on the CPU
    python dev/lrn.py 2                       # Caffe's running sum over channels
    python dev/lrn.py 1 --threads 1           # the first kernels, one thread
    python dev/lrn.py 5 --device cuda         # on a GPU (needs CuPy)

The variants are in dev/lrn_variants.cuh. Each is first run on small shapes (windows
clipped at both edges, fewer channels than the window, size 1 and 3, channels whose
magnitudes differ by 10^6) in float32 and float64, and compared with
backends/reference.py's lrn_forward and lrn_backward. No variant is bit for bit:
the kernels call pow (the C library's, or CUDA's), NumPy its own; and variant 2's
running sum adds and subtracts in another order than the reference's window sums. So
each result must lie within a bound worked out from the rounding of what it computes
(`bounds` below, one per entry), and the driver prints the largest error it saw. Then the paper's two
LRN layers (after conv1: 96 x 55 x 55, after conv2: 256 x 27 x 27; k=2, n=5,
alpha=1e-4, beta=0.75) are timed: the median of --repeats runs (wall clock, and CPU
time, which a busy machine disturbs less), and the bandwidth (bytes of the arrays each
kernel reads and writes, per wall-clock second).
"""

from common import ROOT, check, parser, time_ms, to_device, to_numpy, variant_loader

import numpy as np

from minicnn.backends import reference

VARIANTS = {
    1: "the first kernels: one thread per element, each adding up its window of size channels",
    2: "Caffe's: one thread per column (n, pixel), a running window sum walking the channels",
    3: "variant 1 in MC_ROW_LOOP (a plane per host row), s^-3/4 by two square roots",
    4: "3, its backward in two launches: dy * y / scale once per element, then the window sums",
    5: "as csrc/lrn.cuh: 4 with the powers in element-wise launches (vector code on the host)",
}
KERNELS = {1: ("lrn_forward_1", "lrn_backward_1"), 2: ("lrn_forward_2", "lrn_backward_2"),
           3: ("lrn_forward_3", "lrn_backward_3"), 4: ("lrn_forward_3", "lrn_backward_ratio_4", "lrn_backward_4"),
           5: ("lrn_scale", "lrn_forward", "lrn_backward_terms", "lrn_backward")}
HEADER = ROOT / "dev" / "lrn_variants.cuh"

# (N, C, H, W), size, alpha, beta, k, channel magnitudes spread over 10^spread
CHECKS = [
    ((2, 7, 5, 6), 5, 1e-4, 0.75, 2.0, 0),       # the paper's settings; both edges clip
    ((1, 3, 4, 4), 5, 1e-2, 0.75, 1.0, 0),       # fewer channels than the window
    ((2, 16, 3, 3), 3, 1e-3, 0.5, 1.0, 0),
    ((2, 6, 2, 3), 1, 1e-1, 0.75, 1.0, 0),       # a window of one channel
    ((3, 96, 7, 7), 5, 1e-4, 0.75, 2.0, 6),      # big squares enter and leave the running sum
]
# AlexNet's LRN layers: (C, H, W) of their input
LAYERS = [("lrn1", (96, 55, 55)), ("lrn2", (256, 27, 27))]
SIZE, ALPHA, BETA, K = 5, 1e-4, 0.75, 2.0     # the paper's


def columns(x_shape):
    n, c, h, w = x_shape
    return n * h * w


def count(variant, x_shape):
    """The variant's count: every element (1), every column (n, pixel) (2), every plane (n, c) (3)."""
    return {1: int(np.prod(x_shape)), 2: columns(x_shape)}.get(variant, x_shape[0] * x_shape[1])


def run_forward(loader, variant, x, y, scale, size, alpha, beta, k):
    n, c, h, w = x.shape
    if variant == 5:
        loader.run(KERNELS[5][0], n * c, x, scale, c, h * w, size, alpha, k)
        loader.run(KERNELS[5][1], x.size, x, scale, y, beta)
        return
    loader.run(KERNELS[variant][0], count(variant, x.shape), x, y, scale, c, h * w, size, alpha, beta, k)


def run_backward(loader, variant, x, y, scale, dy, dx, size, alpha, beta):
    n, c, h, w = x.shape
    if variant == 5:              # both element-wise terms first, then the window sums
        ratio = loader.xp.empty_like(x)
        loader.run(KERNELS[5][2], x.size, y, scale, dy, ratio, dx, beta)
        loader.run(KERNELS[5][3], n * c, x, ratio, dx, c, h * w, size, alpha, beta)
        return
    if variant == 4:              # the ratios first, into a scratch array (timed with it)
        ratio = loader.xp.empty_like(x)
        loader.run(KERNELS[4][1], x.size, y, scale, dy, ratio)
        loader.run(KERNELS[4][2], n * c, x, ratio, scale, dy, dx, c, h * w, size, alpha, beta)
        return
    loader.run(KERNELS[variant][1], count(variant, x.shape), x, y, scale, dy, dx, c, h * w, size, alpha, beta)


def bounds(x, y, scale, dy, size, alpha, beta, k):
    """How far each entry of (y, scale, dx) may lie from the reference's, from the rounding of each step.

    A window sum S (of squares, or of dy*y/scale) added in any order, with additions
    and subtractions whose partial sums stay below 2 * max S, is within m * eps * 2 * max S
    of the exact sum after m operations: the reference makes at most size, variant 2 at
    most 2C (each channel enters once and leaves once). scale = k + alpha * S then differs
    by alpha times that, plus its own rounding; y = x * scale^-beta by beta * |y| times
    scale's error / scale, plus a few ulps for pow on each side (16 eps: CUDA's powf is
    within a few ulps). dx = dy * scale^-beta - 2 alpha beta x * R alike."""
    eps = np.finfo(x.dtype).eps
    steps = 2 * x.shape[1] + size
    squares = reference.channel_window_sum(x * x, size)
    scale_bound = alpha * steps * eps * 2 * squares.max() + 4 * eps * scale
    y_bound = np.abs(y) * (beta * scale_bound / scale + 16 * eps)
    ratios = reference.channel_window_sum(np.abs(dy * y / scale), size)
    terms = np.abs(dy * scale ** -beta) + 2 * alpha * beta * np.abs(x) * ratios
    dx_bound = 2 * alpha * beta * np.abs(x) * steps * eps * 2 * ratios.max() + 16 * eps * terms
    return y_bound, scale_bound, dx_bound


def options():
    """The driver's command line: dev/common.py's options and --batch."""
    result = parser(__doc__.splitlines()[0], VARIANTS)
    result.add_argument("--batch", type=int, default=16, help="images per timed layer")
    return result


def main(argv=None):
    args = options().parse_args(argv)
    loader = variant_loader(HEADER, KERNELS[args.variant], args)
    rng = np.random.default_rng(0)
    ref = reference.ReferenceBackend()
    print(f"variant {args.variant}: {VARIANTS[args.variant]}")

    # 1. the reference's numbers, within the rounding bound, on small awkward shapes
    for x_shape, size, alpha, beta, k, spread in CHECKS:
        for dtype in (np.float32, np.float64):
            magnitude = 10.0 ** rng.uniform(-spread / 2, spread / 2, size=(1, x_shape[1], 1, 1))
            x = (rng.standard_normal(x_shape) * magnitude).astype(dtype)
            dy = rng.standard_normal(x_shape).astype(dtype)
            want_y, want_scale = ref.lrn_forward(x, size, alpha, beta, k)
            want_dx = ref.lrn_backward(x, want_y, want_scale, dy, size, alpha, beta, k)
            y_bound, scale_bound, dx_bound = bounds(x, want_y, want_scale, dy, size, alpha, beta, k)
            # NaN in every output: an entry the variant misses shows
            y, scale, dx = (to_device(np.full(x_shape, np.nan, dtype), args) for _ in range(3))
            run_forward(loader, args.variant, to_device(x, args), y, scale, size, alpha, beta, k)
            # backward from the reference's y and scale, so that its own error is what is checked
            run_backward(loader, args.variant, to_device(x, args), to_device(want_y, args),
                         to_device(want_scale, args), to_device(dy, args), dx, size, alpha, beta)
            where = f"{x_shape} n={size} {np.dtype(dtype).name}" + (f" 10^{spread} spread" if spread else "")
            check(f"forward y {where}", y, want_y, y_bound)
            check(f"forward scale {where}", scale, want_scale, scale_bound)
            check(f"backward {where}", dx, want_dx, dx_bound)

    # 2. the time on the paper's LRN layers
    threads = f", {args.threads} threads" if args.device == "cpu" else ""
    print(f"\nAlexNet's LRN layers, batch {args.batch}, float32, {args.device}{threads}; median of {args.repeats}")
    print(f"{'layer':<5} {'shape':<14} {'count':>9} {'forward ms':>10} {'cpu ms':>7} {'GB/s':>6} "
          f"{'backward ms':>11} {'cpu ms':>7} {'GB/s':>6}")
    for name, chw in LAYERS:
        shape = (args.batch,) + chw
        x = to_device(rng.standard_normal(shape).astype(np.float32), args)
        dy = to_device(rng.standard_normal(shape).astype(np.float32), args)
        y, scale, dx = (to_device(np.zeros(shape, np.float32), args) for _ in range(3))
        forward, forward_cpu = time_ms(lambda: run_forward(loader, args.variant, x, y, scale, SIZE, ALPHA, BETA, K),
                                       args)
        backward, backward_cpu = time_ms(lambda: run_backward(loader, args.variant, x, y, scale, dy, dx, SIZE, ALPHA,
                                                              BETA), args)
        size = 4 * int(np.prod(shape)) / 1e9                 # GB of one array
        print(f"{name:<5} {'x'.join(map(str, chw)):<14} {count(args.variant, shape):>9} "
              f"{forward:>10.2f} {forward_cpu:>7.2f} {3 * size / forward * 1e3:>6.1f} "
              f"{backward:>11.2f} {backward_cpu:>7.2f} {5 * size / backward * 1e3:>6.1f}")
        assert np.isfinite(to_numpy(dx)).all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
