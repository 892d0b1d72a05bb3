"""One training step of the paper's AlexNet: minicnn through each CUDA loader against PyTorch.

    python benchmarks/alexnet_bench.py                       # every runner, batch 128, on the GPU
    python benchmarks/alexnet_bench.py --tf32                # both sides may use TF32
    python benchmarks/alexnet_bench.py --runners torch-cudnn torch-im2col --json torch.json
    python benchmarks/alexnet_bench.py --runners minicnn-rawkernel minicnn-pybind11 --merge torch.json
    python benchmarks/alexnet_bench.py --device cpu --batch 2 # the same code on the CPU (CI runs it)

A step is what fit() does per batch: forward, cross-entropy, backward, SGD with the paper's
settings (lr 0.01, momentum 0.9, weight decay 5e-4), in training mode (dropout on), on
random 3x227x227 images that stay on the device, with the labels passed from the host as
fit() passes them (minicnn checks and copies them; the PyTorch step copies them with .to()).

The runners, on a GPU:

    minicnn-rawkernel  the csrc kernels through CuPy's RawModule (NVRTC); GEMMs by cupy.matmul
    minicnn-pybind11   the same kernels compiled by nvcc (minicnn._cuda); cuBLAS GEMMs
    torch-cudnn        PyTorch eager with cuDNN (cudnn.benchmark on; TF32 off unless --tf32)
    torch-im2col       PyTorch eager with cuDNN off: its own im2col + GEMM convolutions

and on the CPU (--device cpu): minicnn-kernels (the kernels built for the host), torch-onednn
(PyTorch with oneDNN) and torch-im2col (oneDNN off).

Every runner starts from the same weights (minicnn's paper initialisation, copied into
PyTorch). Each is warmed up, then timed step by step (CUDA events around each step on the
GPU, perf_counter on the CPU): the median, and images per second from it. One more step
measures the peak GPU memory (PyTorch: torch.cuda.max_memory_allocated; minicnn: the most
bytes CuPy's memory pool had handed out at once, counted by a memory hook; both include
the weights, momentum buffers and images already there). For minicnn, one traced step
(mc.trace, each launch timed between two synchronisations) gives the split by kernel.

--tf32: PyTorch's cuDNN and cuBLAS may use TF32, and so may the RawKernel loader's GEMMs
(CUPY_TF32=1); minicnn._cuda sets no TF32 math mode, so the pybind11 loader stays FP32.
The JSON records which runner used what.

--merge FILE adds the runners of an earlier run (same device, batch and TF32 setting):
scripts/gpu_round.sh times PyTorch while minicnn._cuda is still compiling, then minicnn.
A runner named with --runners that cannot run (PyTorch not importable, minicnn._cuda not
built) is an error (exit status 1, after the JSON is written); without --runners such a
runner is left out with a note.

The last line compares the faster minicnn loader with both PyTorch runners (below 1:
minicnn is faster):

    minicnn / cuDNN-fp32 = X; minicnn / torch-im2col = Y
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

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the other benchmarks, whose pieces are reused here

import minicnn as mc  # noqa: E402
import minicnn.functional as F  # noqa: E402
from conv_bench import Timer  # noqa: E402
from cpu_step import SGD_SETTINGS, torch_model  # noqa: E402
from minicnn.device import cuda_available  # noqa: E402

CLASSES, IMAGE = 1000, (3, 227, 227)
GPU_RUNNERS = ("minicnn-rawkernel", "minicnn-pybind11", "torch-cudnn", "torch-im2col")
CPU_RUNNERS = ("minicnn-kernels", "torch-onednn", "torch-im2col")


def batch_data(batch, seed=0):
    """Random images and integer labels, as NumPy arrays (the same for every runner)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch,) + IMAGE).astype(np.float32), rng.integers(0, CLASSES, batch)


def paper_alexnet():
    mc.manual_seed(0)
    return mc.models.alexnet(num_classes=CLASSES)


# --------------------------------------------------------------------------- the runners
class MinicnnRunner:
    """fit()'s inner loop on one batch: on the GPU through one loader, or on the CPU's kernels backend."""

    def __init__(self, name, device, batch):
        self.name, self.device, self.ours = name, device, True
        self.where = name[len("minicnn-"):]                      # a CUDA loader, or the CPU backend "kernels"
        self.activate()
        if device == "cuda":
            from minicnn.backends import cuda
            cuda.backend(self.where)           # fails here, naming what is missing, if the loader cannot load
        else:
            from minicnn.backends import host
            if not host.available():
                raise RuntimeError(host.missing_extension_message())
        self.model = paper_alexnet().to(device)
        self.model.train()
        self.optimizer = mc.optim.SGD(self.model.parameters(), **SGD_SETTINGS)
        images, self.labels = batch_data(batch)
        self.images = mc.Tensor(images).to(device)

    def activate(self):
        if self.device == "cuda":
            mc.set_cuda_loader(self.where)
        else:
            mc.set_cpu_backend(self.where)

    def step(self):
        loss = F.cross_entropy(self.model(self.images), self.labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def loss_value(self, loss):
        return float(loss.numpy())

    def timer(self, warmup, repeats):
        return Timer("cupy" if self.device == "cuda" else "cpu", warmup, repeats)

    def synchronize(self):
        if self.device == "cuda":
            import cupy
            cupy.cuda.get_current_stream().synchronize()

    def peak_memory(self):
        """(the most bytes in use at once during one step, the bytes the pool holds), or Nones on the CPU
        or without CuPy's pool (MINICNN_CUPY_NO_POOL=1)."""
        if self.device != "cuda" or os.environ.get("MINICNN_CUPY_NO_POOL") == "1":
            return None, None
        import cupy
        pool = cupy.get_default_memory_pool()
        self.synchronize()
        in_use = {"now": pool.used_bytes(), "peak": pool.used_bytes()}

        class PeakHook(cupy.cuda.MemoryHook):
            name = "alexnet_bench_peak"

            def malloc_postprocess(self, **kwargs):
                in_use["now"] += kwargs["mem_size"]
                in_use["peak"] = max(in_use["peak"], in_use["now"])

            def free_postprocess(self, **kwargs):
                in_use["now"] -= kwargs["mem_size"]

        with PeakHook():
            self.step()
            self.synchronize()
        return in_use["peak"], pool.total_bytes()

    def kernel_split(self):
        """One traced step, by kernel: [{kernel, calls, ms, share, GFLOP/s}], slowest first."""
        with mc.trace(model=self.model) as trace:
            self.step()
        summary = trace.summary()
        return dict(step_ms=1e3 * summary.seconds, kernels=[
            dict(kernel=g["name"], calls=g["calls"], ms=1e3 * g["seconds"], share=g["share"],
                 gflops_per_s=(g["flops"] / g["seconds"] / 1e9) if g["flops"] and g["seconds"] > 0 else None)
            for g in summary.by_kernel])


class TorchRunner:
    """The same step in PyTorch eager: the same layers and weights (cpu_step.torch_model), its SGD."""

    def __init__(self, name, device, batch, tf32):
        import torch
        self.torch, self.name, self.device, self.tf32, self.ours = torch, name, device, tf32, False
        self.activate()
        self.model = torch_model(paper_alexnet()).to(device)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), **SGD_SETTINGS)
        images, labels = batch_data(batch)
        self.images = torch.from_numpy(images).to(device)
        self.labels = torch.from_numpy(labels)               # on the host, as a DataLoader gives them

    def activate(self):
        """cuDNN (oneDNN on the CPU) on or off, TF32 as asked; global switches, so set before each use."""
        backends = self.torch.backends
        library_on = self.name != "torch-im2col"
        backends.cuda.matmul.allow_tf32 = self.tf32
        backends.cudnn.allow_tf32 = self.tf32
        backends.cudnn.enabled = library_on
        backends.cudnn.benchmark = library_on            # let cuDNN pick its fastest algorithms
        backends.mkldnn.enabled = library_on

    def step(self):
        torch = self.torch
        loss = torch.nn.functional.cross_entropy(self.model(self.images), self.labels.to(self.device))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def loss_value(self, loss):
        return float(loss.item())

    def timer(self, warmup, repeats):
        return Timer("torch" if self.device == "cuda" else "cpu", warmup, repeats)

    def synchronize(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def peak_memory(self):
        if self.device != "cuda":
            return None, None
        torch = self.torch
        self.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.step()
        self.synchronize()
        return torch.cuda.max_memory_allocated(), torch.cuda.memory_reserved()


def make_runner(name, device, batch, tf32):
    if name.startswith("minicnn-"):
        return MinicnnRunner(name, device, batch)
    return TorchRunner(name, device, batch, tf32)


# --------------------------------------------------------------------------- measuring
def measure(runner, batch, warmup, repeats, trace):
    runner.activate()
    first_loss = runner.loss_value(runner.step())          # a first step (compiles, allocates) and its loss
    if not np.isfinite(first_loss):
        raise RuntimeError(f"the first step's loss is {first_loss}")
    timer = runner.timer(warmup, repeats)
    median = timer(runner.step, runner.synchronize)
    peak, held = runner.peak_memory()
    result = dict(ms=median, min_ms=min(timer.times), max_ms=max(timer.times), all_ms=[round(t, 3) for t in timer.times],
                  images_per_s=batch / (median * 1e-3), peak_memory_bytes=peak, memory_held_bytes=held,
                  first_loss=first_loss)
    if runner.ours and trace:
        result["trace"] = runner.kernel_split()
    return result


def library_label(device, tf32):
    return "oneDNN-fp32" if device == "cpu" else ("cuDNN-tf32" if tf32 else "cuDNN-fp32")


def ratios(results, device, tf32):
    """The faster minicnn runner over each PyTorch runner: (the line, the numbers)."""
    ours = {name: r for name, r in results.items() if name.startswith("minicnn-") and "ms" in r}
    best = min(ours, key=lambda name: ours[name]["ms"]) if ours else None
    library = "torch-onednn" if device == "cpu" else "torch-cudnn"
    numbers, parts = {"minicnn runner": best}, []
    for label, peer in ((library_label(device, tf32), library), ("torch-im2col", "torch-im2col")):
        key = f"minicnn / {label}"
        if best is not None and "ms" in results.get(peer, {}):
            numbers[key] = ours[best]["ms"] / results[peer]["ms"]
            parts.append(f"{key} = {numbers[key]:.2f}")
        else:
            numbers[key] = None
            parts.append(f"{key} = n/a (no {'minicnn' if best is None else peer} result)")
    return "; ".join(parts), numbers


def table(report):
    results, device = report["results"], report["device"]
    library = "torch-onednn" if device == "cpu" else "torch-cudnn"
    tf32 = "TF32 allowed" if report["tf32"] else "TF32 off"
    lines = [f"AlexNet training step, batch {report['batch']}, {'x'.join(map(str, IMAGE))}, float32 ({tf32}), "
             f"on {report['device_name']}; {report['timing']} of {report['repeats']} steps after {report['warmup']}",
             f"{'runner':<18} {'median ms':>10} {'min..max ms':>17} {'images/s':>9} {'peak MB':>9} "
             f"{'x ' + library:>14} {'x torch-im2col':>14}"]
    for name, r in results.items():
        if "ms" not in r:
            lines.append(f"{name:<18} failed: {r['error']}")
            continue
        peak = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r.get("peak_memory_bytes") else "-"
        vs = [f"{r['ms'] / results[p]['ms']:.2f}" if "ms" in results.get(p, {}) else "-" for p in (library, "torch-im2col")]
        spread = f"{r['min_ms']:.1f}..{r['max_ms']:.1f}"
        lines.append(f"{name:<18} {r['ms']:>10.2f} {spread:>17} {r['images_per_s']:>9.0f} {peak:>9} {vs[0]:>14} {vs[1]:>14}")
    for name, r in results.items():
        if "trace" in r:
            lines += ["", f"where {name}'s step goes (one traced step, {r['trace']['step_ms']:.1f} ms; each launch "
                          f"timed between two synchronisations):",
                      f"  {'kernel':<44} {'calls':>6} {'ms':>9} {'share':>7} {'GFLOP/s':>9}"]
            for k in r["trace"]["kernels"][:12]:
                rate = f"{k['gflops_per_s']:.0f}" if k["gflops_per_s"] else ""
                calls = k["calls"] or ""
                lines.append(f"  {k['kernel']:<44} {calls:>6} {k['ms']:>9.2f} {k['share']:>7.1%} {rate:>9}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: the GPU when CuPy sees one, else the CPU")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 128 on a GPU, 2 on a CPU)")
    parser.add_argument("--runners", nargs="+", metavar="RUNNER",
                        help=f"on a GPU some of {', '.join(GPU_RUNNERS)}; on a CPU some of {', '.join(CPU_RUNNERS)} "
                             "(default: every one that can run here)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 GPU, 1 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (median; default 20 GPU, 3 CPU)")
    parser.add_argument("--tf32", action="store_true", help="let cuDNN, cuBLAS and CuPy's GEMMs use TF32")
    parser.add_argument("--no-trace", action="store_true", help="skip minicnn's traced step (the per-kernel split)")
    parser.add_argument("--merge", help="a JSON of an earlier run whose runners to add (same device, batch, TF32)")
    parser.add_argument("--json", default=os.path.join("runs", time.strftime("alexnet_bench-%Y%m%d-%H%M%S.json")),
                        help="where to write the results ('' for nowhere)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    on_gpu = cuda_available() and args.device != "cpu"
    if args.device == "cuda" and not on_gpu:
        raise SystemExit("--device cuda: no CUDA device (CuPy sees no GPU)")
    device = "cuda" if on_gpu else "cpu"
    known = GPU_RUNNERS if on_gpu else CPU_RUNNERS
    unknown = [name for name in args.runners or () if name not in known]
    if unknown:
        raise SystemExit(f"--runners: {', '.join(unknown)} cannot run on the {device.upper()}; "
                         f"choose from {', '.join(known)}")
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"          # read by CuPy at its first float32 matmul
    batch = args.batch or (128 if on_gpu else 2)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    repeats = args.repeats if args.repeats is not None else (20 if on_gpu else 3)
    if on_gpu:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        device_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    else:
        device_name = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    report = dict(device=device, device_name=device_name, batch=batch, image=list(IMAGE), classes=CLASSES,
                  dtype="float32", tf32=args.tf32, sgd=SGD_SETTINGS, dropout=True, warmup=warmup, repeats=repeats,
                  timing="CUDA events, median" if on_gpu else "perf_counter, median",
                  tf32_used={}, results={})
    if args.merge:
        merge(report, json.loads(Path(args.merge).read_text()), args.merge)

    failed = []
    for name in args.runners or known:
        try:
            runner = make_runner(name, device, batch, args.tf32)
        except (ImportError, RuntimeError) as e:
            if args.runners:
                failed.append(name)
                report["results"][name] = dict(error=f"{type(e).__name__}: {e}")
            print(f"note: {name} cannot run here: {e}", flush=True)
            continue
        print(f"  {name} ...", flush=True)
        try:
            report["results"][name] = measure(runner, batch, warmup, repeats, trace=not args.no_trace)
        except Exception as e:          # one runner's failure must not hide the others' numbers
            failed.append(name)
            report["results"][name] = dict(error=f"{type(e).__name__}: {e}")
        report["tf32_used"][name] = args.tf32 and on_gpu and name != "minicnn-pybind11"
        del runner

    report["versions"] = versions()
    line, report["ratios"] = ratios(report["results"], device, args.tf32)
    print(table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    best = report["ratios"]["minicnn runner"]
    if best:
        print(f"minicnn: {best}, the faster minicnn runner ({report['results'][best]['ms']:.2f} ms per step)")
    print(line)
    return 1 if failed else 0


def merge(report, earlier, path):
    """Add an earlier run's results to report, if it measured the same thing."""
    for key in ("device", "device_name", "batch", "tf32"):
        if earlier.get(key) != report[key]:
            raise SystemExit(f"--merge {path}: its {key} is {earlier.get(key)!r}, this run's {report[key]!r}")
    report["results"].update(earlier["results"])
    report["tf32_used"].update(earlier.get("tf32_used", {}))
    report["merged_from"] = str(path)


def versions():
    """The versions of what this run imported."""
    found = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("cupy", "torch"):
        if name in sys.modules:
            found[name] = sys.modules[name].__version__
    return found


if __name__ == "__main__":
    sys.exit(main())
