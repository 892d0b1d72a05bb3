"""How close do hand-written kernels get to cuDNN? AlexNet's five convolutions, timed.

    python benchmarks/conv_bench.py                 # GPU if one is visible, else the CPU path
    python benchmarks/conv_bench.py --batch 64 --layers conv1 conv3 --json results.json

For each of AlexNet's conv layers (conv1..conv5, batch 128 by default) and each
pass - forward, backward-data (dx), backward-weights (dw and db) - it times:

  on a GPU   minicnn with the RawKernel loader, minicnn with the pybind11 loader
             (when minicnn._cuda is built), and where PyTorch is importable:
             PyTorch with cuDNN (TF32 off, so FP32 against FP32) and PyTorch with
             cuDNN disabled (its own im2col + GEMM path). Also the bare cuBLAS
             GEMMs of our im2col formulation on the same shapes ("gemm-only"), so
             the cost of im2col/col2im and the bias is visible as the difference.
  on a CPU   the NumPy reference, the csrc kernels compiled for the host
             (minicnn._host, on MINICNN_NUM_THREADS threads) and PyTorch on the CPU if
             importable; "gemm-only" is then NumPy's matmul on the same shapes. The
             default batch is small there (--batch overrides it). NumPy's BLAS and
             PyTorch take their thread counts from the environment, so for a
             like-for-like (and, on a busy machine, a far steadier) comparison run with
             MINICNN_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1.

Like llm.c's dev/cuda harness: every implementation is first checked against
the others (and minicnn against the NumPy reference on two images), then timed:
warm-up runs, then the median of repeated runs (CUDA events on the GPU,
perf_counter on the CPU). GFLOP/s counts 2 flops per multiply-add of the
convolution itself. "x cudnn" is our time divided by the peer's (lower is better;
1.00 = as fast). The table is printed and written as JSON (by default to
runs/conv_bench-<time>.json; runs/ is not tracked by git).

It uses the installed minicnn (pip install . or pip install -e .); from a checkout
that was never installed it falls back to the source tree beside it.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:  # the installed minicnn (this script's folder, not the checkout, is first on sys.path)
    import minicnn  # noqa: F401
except ImportError:  # a checkout that was never installed: use the source tree beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minicnn import backends  # noqa: E402
from minicnn.device import cuda_available  # noqa: E402
from minicnn.shapes import output_size  # noqa: E402

reference = backends.reference_backend()

# name, (C, H, W) of the input, O, kernel, stride, padding, groups: the paper's AlexNet on 227x227
LAYERS = [
    ("conv1", (3, 227, 227), 96, 11, 4, 0, 1),
    ("conv2", (96, 27, 27), 256, 5, 1, 2, 2),
    ("conv3", (256, 13, 13), 384, 3, 1, 1, 1),
    ("conv4", (384, 13, 13), 384, 3, 1, 1, 2),
    ("conv5", (384, 13, 13), 256, 3, 1, 1, 2),
]
PASSES = ("forward", "backward-data", "backward-weights")


class Layer:
    def __init__(self, name, chw, out_ch, kernel, stride, padding, groups, batch):
        self.name, self.groups = name, groups
        self.x_shape = (batch,) + chw
        self.w_shape = (out_ch, chw[0] // groups, kernel, kernel)
        self.stride, self.padding = (stride, stride), (padding, padding)
        oh = output_size(chw[1], kernel, stride, padding)
        ow = output_size(chw[2], kernel, stride, padding)
        self.y_shape = (batch, out_ch, oh, ow)
        # the GEMM of each pass, per group: (M, K) @ (K, N) for each of `batch` images
        self.k = chw[0] // groups * kernel * kernel
        self.og, self.l = out_ch // groups, oh * ow
        self.flops = 2.0 * batch * out_ch * oh * ow * self.k     # the same count for all three passes

    def data(self, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(np.float32)
        w = (rng.standard_normal(self.w_shape) * 0.01).astype(np.float32)
        b = rng.standard_normal(self.w_shape[0]).astype(np.float32)
        dy = rng.standard_normal(self.y_shape).astype(np.float32)
        return x, w, b, dy

    def args(self):
        """The backends' conv arguments: stride, padding (top, bottom, left, right), groups, dilation."""
        return self.stride, self.padding * 2, self.groups, (1, 1)


# --------------------------------------------------------------------------- implementations
# Each implementation maps (layer, pass) to a function that runs that pass on arrays of
# its own device and returns the result(s) as NumPy arrays when called with fetch=True.
def minicnn_impl(backend, to_dev):
    def make(layer, arrays, which):
        x, w, b, dy = (to_dev(a) for a in arrays)
        args = layer.args()
        if which == "forward":
            return lambda: (backend.conv2d_forward(x, w, b, *args),)
        if which == "backward-data":
            return lambda: backend.conv2d_backward(x, w, dy, *args, True, False, False)[:1]
        return lambda: backend.conv2d_backward(x, w, dy, *args, False, True, True)[1:]
    return make


def torch_impl(torch, device):
    def make(layer, arrays, which):
        x, w, b, dy = (torch.from_numpy(a).to(device) for a in arrays)
        stride, padding, groups = layer.stride, layer.padding, layer.groups
        conv = torch.nn.functional.conv2d
        grad = torch.nn.grad
        if which == "forward":
            return lambda: (conv(x, w, b, stride, padding, 1, groups),)
        if which == "backward-data":
            return lambda: (grad.conv2d_input(x.shape, w, dy, stride, padding, 1, groups),)
        return lambda: (grad.conv2d_weight(x, w.shape, dy, stride, padding, 1, groups), dy.sum((0, 2, 3)))
    return make


def gemm_only_impl(xp, to_dev):
    """The GEMMs of our im2col formulation, alone: one per group, the batch side by side
    (cuBLAS or NumPy's BLAS), as backends/kernels.py runs them."""
    def make(layer, arrays, which):
        n, g, og, k, L = layer.x_shape[0], layer.groups, layer.og, layer.k, layer.l
        rng = np.random.default_rng(1)
        w = to_dev(rng.standard_normal((g, og, k)).astype(np.float32))
        cols = to_dev(rng.standard_normal((g, k, n * L)).astype(np.float32))
        dy = to_dev(rng.standard_normal((g, og, n * L)).astype(np.float32))
        if which == "forward":          # y_g = w_g @ cols_g
            return lambda: [xp.matmul(w, cols)]
        if which == "backward-data":    # dcols_g = w_g^T @ dy_g
            return lambda: [xp.matmul(xp.swapaxes(w, 1, 2), dy)]
        return lambda: [xp.matmul(cols, xp.swapaxes(dy, 1, 2))]   # dw_g^T = cols_g @ dy_g^T
    return make


def to_numpy(a):
    if hasattr(a, "get"):
        return a.get()
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# --------------------------------------------------------------------------- timing
class Timer:
    """Median wall time of fn in milliseconds: CUDA events on a GPU, perf_counter on a CPU.
    ``times`` keeps the last call's timed runs."""

    def __init__(self, kind, warmup, repeats):
        self.kind, self.warmup, self.repeats = kind, warmup, repeats

    def __call__(self, fn, sync=None):
        for _ in range(self.warmup):
            fn()
        if sync:
            sync()
        times = []
        for _ in range(self.repeats):
            if self.kind == "cupy":
                import cupy
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(cupy.cuda.get_elapsed_time(start, end))
            elif self.kind == "torch":
                import torch
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        self.times = times
        return statistics.median(times)


def relative_error(ours, ref):
    return float(np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-30))


# --------------------------------------------------------------------------- the benchmark
def implementations(on_gpu, torch, timer_args):
    """[(name, make, timer, is_ours)], the first one being the baseline the others are checked against."""
    warmup, repeats = timer_args
    impls = []
    if on_gpu:
        import cupy
        from minicnn.backends import cuda
        impls.append(("minicnn-rawkernel", minicnn_impl(cuda.backend("rawkernel"), cupy.asarray),
                      Timer("cupy", warmup, repeats), True))
        try:
            impls.append(("minicnn-pybind11", minicnn_impl(cuda.backend("pybind11"), cupy.asarray),
                          Timer("cupy", warmup, repeats), True))
        except RuntimeError as e:
            print(f"note: skipping the pybind11 loader: {e}")
        if torch is not None and torch.cuda.is_available():
            impls.append(("torch-cudnn", torch_impl(torch, "cuda"), Timer("torch", warmup, repeats), False))
            impls.append(("torch-nocudnn", torch_impl(torch, "cuda"), Timer("torch", warmup, repeats), False))
        impls.append(("gemm-only(cuBLAS)", gemm_only_impl(cupy, cupy.asarray), Timer("cupy", warmup, repeats), None))
    else:
        from minicnn.backends import host
        if host._host is not None:
            impls.append(("minicnn-host-kernels", minicnn_impl(backends.host_backend(), lambda a: a),
                          Timer("cpu", warmup, repeats), True))
        else:
            print(f"note: skipping minicnn-host-kernels: {host.missing_extension_message()}")
        impls.append(("numpy-reference", minicnn_impl(reference, lambda a: a), Timer("cpu", warmup, repeats), True))
        if torch is not None:
            impls.append(("torch-cpu", torch_impl(torch, "cpu"), Timer("cpu", warmup, repeats), False))
        impls.append(("gemm-only(numpy)", gemm_only_impl(np, lambda a: a), Timer("cpu", warmup, repeats), None))
    return impls


def torch_settings(torch, name):
    """cuDNN on (TF32 off: FP32 against FP32) or off (PyTorch's own CUDA im2col path)."""
    if torch is None or not name.startswith("torch"):
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.enabled = name != "torch-nocudnn"
    torch.backends.cudnn.benchmark = name == "torch-cudnn"      # let cuDNN pick its fastest algorithm


def validate_against_reference(layer, impl_name, make):
    """The baseline implementation equals the NumPy reference on two images."""
    small = Layer(layer.name, layer.x_shape[1:], layer.w_shape[0], layer.w_shape[2], layer.stride[0],
                  layer.padding[0], layer.groups, 2)
    arrays = small.data(seed=7)
    x, w, b, dy = arrays
    args = small.args()
    expected = {
        "forward": (reference.conv2d_forward(x, w, b, *args),),
        "backward-data": reference.conv2d_backward(x, w, dy, *args, True, False, False)[:1],
        "backward-weights": reference.conv2d_backward(x, w, dy, *args, False, True, True)[1:],
    }
    for which in PASSES:
        got = make(small, arrays, which)()
        for g, e in zip(got, expected[which]):
            err = relative_error(to_numpy(g), e)
            if err > 1e-4:
                raise SystemExit(f"VALIDATION FAILED: {impl_name} {layer.name} {which} differs from the "
                                 f"NumPy reference (relative error {err:.2e})")


def run(args):
    on_gpu = cuda_available() and args.device != "cpu"
    if args.device == "cuda" and not on_gpu:
        raise SystemExit("--device cuda: no CUDA device (CuPy sees no GPU)")
    try:
        import torch
    except ImportError:
        torch = None
    batch = args.batch or (128 if on_gpu else 4)
    if on_gpu:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        device_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        sync = cupy.cuda.Device().synchronize
    else:
        print("No CUDA device: running the CPU path (NumPy reference, host-compiled kernels"
              + (", PyTorch CPU" if torch is not None else "") + f") at batch {batch}.")
        import os
        threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                   if k in os.environ}
        device_name = f"CPU ({platform.machine()}, {os.cpu_count()} cores, threads {threads or 'default'})"
        sync = None
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    repeats = args.repeats if args.repeats is not None else (20 if on_gpu else 3)
    impls = implementations(on_gpu, torch, (warmup, repeats))
    layers = [Layer(*spec, batch) for spec in LAYERS if not args.layers or spec[0] in args.layers]

    results = []
    for layer in layers:
        arrays = layer.data()
        validate_against_reference(layer, impls[0][0], impls[0][1])
        for which in PASSES:
            baseline = None
            for name, make, timer, ours in impls:
                torch_settings(torch, name)
                fn = make(layer, arrays, which)
                if ours is not None:       # validate against the first implementation before timing
                    got = [to_numpy(a) for a in fn()]
                    if baseline is None:
                        baseline = got
                    else:
                        for g, e in zip(got, baseline):
                            err = relative_error(g, e)
                            if err > 1e-3:
                                raise SystemExit(f"VALIDATION FAILED: {name} {layer.name} {which} differs from "
                                                 f"{impls[0][0]} (relative error {err:.2e})")
                if name.startswith("torch") and on_gpu:
                    ms = timer(fn, torch.cuda.synchronize)
                else:
                    ms = timer(fn, sync)
                results.append(dict(layer=layer.name, pass_=which, impl=name, ms=ms,
                                    gflops=layer.flops / (ms * 1e-3) / 1e9, ours=bool(ours)))
                print(f"  {layer.name:5s} {which:16s} {name:22s} {ms:10.3f} ms", flush=True)

    # ratios: each of ours against each peer, same layer and pass
    peers = [name for name, _, _, ours in impls if ours is False]
    by_key = {(r["layer"], r["pass_"], r["impl"]): r for r in results}
    for r in results:
        if r["ours"]:
            for peer in peers:
                r[f"x {peer}"] = r["ms"] / by_key[(r["layer"], r["pass_"], peer)]["ms"]
            gemm = [n for n, _, _, o in impls if o is None][0]
            r["gemm share"] = by_key[(r["layer"], r["pass_"], gemm)]["ms"] / r["ms"]

    table = format_table(results, peers, device_name, batch)
    print(table)
    report = dict(device=device_name, batch=batch, dtype="float32", warmup=warmup, repeats=repeats,
                  timing="CUDA events, median" if on_gpu else "perf_counter, median",
                  torch=None if torch is None else torch.__version__,
                  results=[{("pass" if k == "pass_" else k): v for k, v in r.items()} for r in results])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if args.table:
        Path(args.table).write_text(table + "\n")
    return report


def format_table(results, peers, device_name, batch):
    ratio_cols = [f"x {p}" for p in peers]
    head = ["layer", "pass", "implementation", "ms", "GFLOP/s"] + ratio_cols + ["gemm share"]
    rows = []
    for r in results:
        rows.append([r["layer"], r["pass_"], r["impl"], f"{r['ms']:.3f}", f"{r['gflops']:.1f}"]
                    + [f"{r[c]:.2f}" if c in r else "" for c in ratio_cols]
                    + [f"{r['gemm share']:.0%}" if "gemm share" in r else ""])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))   # noqa: E731
    out = [f"AlexNet convolutions, batch {batch}, float32, on {device_name}",
           "x <peer>: our time / the peer's time (lower is better). gemm share: the bare GEMMs' time / ours.",
           line(head), line(["-" * w for w in widths])]
    previous = None
    for row in rows:
        if previous is not None and row[:2] != previous[:2]:
            out.append("")
        out.append(line(row))
        previous = row
    return "\n".join(out)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default 128 on a GPU, 4 on a CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median; default 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3 GPU, 1 CPU)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: the GPU when CuPy sees one, else the CPU")
    parser.add_argument("--layers", nargs="+", choices=[spec[0] for spec in LAYERS], metavar="LAYER",
                        help=f"a subset of {', '.join(spec[0] for spec in LAYERS)} (default: all)")
    parser.add_argument("--json", default=os.path.join("runs", time.strftime("conv_bench-%Y%m%d-%H%M%S.json")),
                        help="where to write the results ('' for nowhere)")
    parser.add_argument("--table", default="", help="also write the table to this file")
    return parser


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
