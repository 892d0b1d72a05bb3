"""One training step on the CPU: minicnn (each CPU backend) against PyTorch.

    python benchmarks/cpu_step.py                       # both networks, every runner
    python benchmarks/cpu_step.py --repeats 9 --json out.json
    python benchmarks/cpu_step.py --profile             # also the per-kernel split of the kernels backend
    python benchmarks/cpu_step.py --networks small --runners kernels torch
    python benchmarks/cpu_step.py --threads 1 2         # one thread on each side, then two
    python benchmarks/cpu_step.py --markdown out.json   # README's table of a run's JSON

A step is what fit() does per batch: forward, cross-entropy, backward, SGD with
momentum 0.9 and weight decay 5e-4 (the paper's), on random images of the
network's input size. The networks:

    small   models.alexnet_small, batch 64, 1x28x28, 10 classes (the main job's network)
    alexnet models.alexnet (the paper's), batch 16, 3x227x227, 1000 classes

The runners:

    reference  minicnn's NumPy reference backend
    kernels    minicnn's csrc kernels compiled for the host (minicnn._host), on
               MINICNN_NUM_THREADS threads (default: every core this process may use)
    torch      PyTorch on the CPU (where importable), the same layers and weights,
               torch.set_num_threads(--threads, the same count as minicnn's)

minicnn sets OMP_WAIT_POLICY=PASSIVE unless it is set (see minicnn/backends/host.py);
PyTorch, imported after minicnn here, inherits it, so both run under the same
policy. Run with OMP_WAIT_POLICY=active to see both with spinning threads. This script
also sets OPENBLAS_THREAD_TIMEOUT=4 (unless set), so that the reference's OpenBLAS threads
sleep right after each GEMM instead of spinning into the time of the runner timed next, and
gives the reference as many BLAS threads as --threads says.

The machine this runs on is often shared, so the runners are INTERLEAVED (step 1
of every runner, then step 2 of every runner, ...) after warm-up steps, and each
runner's time is the MEDIAN of its steps; the spread (min..max) is printed too.
"x torch" is the runner's median divided by PyTorch's (lower is better). "cpu ms"
is the median CPU time of the process per step (all its threads): far below
threads x wall time, the step waited (for a core another program held, say).

--profile times every kernel launch and GEMM of the kernels runner (mc.trace's launch
records, a few extra steps after the timed ones) and prints where its step goes,
wall clock and CPU time, sorted by CPU time; "other" is what is left: Python, the
autograd, NumPy allocations and copies. With MINICNN_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
the CPU-time split is the steadiest view of the work on a machine other programs share.
The JSON holds every number printed.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

# OpenBLAS's threads (the NumPy reference's GEMMs) spin for about 2^28 cycles after each call
# before they sleep: interleaved, that spinning lands in the next runner's time. 2^4 cycles
# instead (read when NumPy loads OpenBLAS, so before the import).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

try:  # the installed minicnn (this script's folder, not the checkout, is first on sys.path)
    import minicnn  # noqa: F401
except ImportError:  # a checkout that was never installed: use the source tree beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minicnn as mc  # noqa: E402
import minicnn.functional as F  # noqa: E402
from minicnn import backends, nn  # noqa: E402
from minicnn.backends.host import available_cores  # noqa: E402

NETWORKS = {
    # name: (model factory, batch, (C, H, W), classes)
    "small": (lambda: mc.models.alexnet_small(num_classes=10, in_channels=1, input_size=28), 64, (1, 28, 28), 10),
    "alexnet": (lambda: mc.models.alexnet(num_classes=1000), 16, (3, 227, 227), 1000),
}
RUNNERS = ("reference", "kernels", "torch")
SGD_SETTINGS = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)


# --------------------------------------------------------------------------- minicnn
class MinicnnStep:
    """fit()'s inner loop on one batch, on a CPU backend ("reference" or "kernels").

    threads: the reference's NumPy BLAS threads (threadpoolctl), so that it gets as many
    threads as the other runners: left alone, OpenBLAS uses every core and its threads spin
    after each GEMM, which slows the runner timed next."""

    def __init__(self, network, backend, seed=0, threads=None):
        self.threads = threads
        factory, batch, chw, classes = NETWORKS[network]
        mc.manual_seed(seed)
        self.model = factory()
        self.model.train()
        self.optimizer = mc.optim.SGD(self.model.parameters(), **SGD_SETTINGS)
        rng = np.random.default_rng(seed)
        self.images = rng.standard_normal((batch,) + chw).astype(np.float32)
        self.labels = rng.integers(0, classes, batch)
        self.backend = backend

    def __call__(self):
        from threadpoolctl import threadpool_limits
        previous = backends.get_cpu_backend()
        backends.set_cpu_backend(self.backend)
        try:
            with threadpool_limits(self.threads if self.backend == "reference" else None, user_api="blas"):
                loss = F.cross_entropy(self.model(mc.Tensor(self.images)), self.labels)
                loss.item()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        finally:
            backends.set_cpu_backend(previous)


# --------------------------------------------------------------------------- PyTorch
def torch_model(model):
    """The same layers and weights as a minicnn Sequential, in PyTorch."""
    import torch

    layers = []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Conv2d):
            t = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                layer.padding, groups=layer.groups, bias=layer.bias is not None)
        elif isinstance(layer, nn.Linear):
            t = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif isinstance(layer, nn.LocalResponseNorm):
            # PyTorch divides alpha by size; the paper (minicnn's default) does not
            alpha = layer.alpha if layer.divide_alpha_by_size else layer.alpha * layer.size
            t = torch.nn.LocalResponseNorm(layer.size, alpha, layer.beta, layer.k)
        elif isinstance(layer, nn.MaxPool2d):
            t = torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, nn.ReLU):
            t = torch.nn.ReLU()
        elif isinstance(layer, nn.Dropout):
            t = torch.nn.Dropout(layer.p)
        elif isinstance(layer, nn.Flatten):
            t = torch.nn.Flatten()
        else:
            raise TypeError(f"no PyTorch twin for layer {name} ({type(layer).__name__})")
        if hasattr(layer, "weight"):
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(layer.weight.data))
                if layer.bias is not None:
                    t.bias.copy_(torch.from_numpy(layer.bias.data))
        layers.append(t)
    return torch.nn.Sequential(*layers)


class TorchStep:
    def __init__(self, network, threads, seed=0):
        import torch

        torch.set_num_threads(threads)
        factory, batch, chw, classes = NETWORKS[network]
        mc.manual_seed(seed)
        self.torch = torch
        self.model = torch_model(factory())
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), **SGD_SETTINGS)
        rng = np.random.default_rng(seed)
        self.images = torch.from_numpy(rng.standard_normal((batch,) + chw).astype(np.float32))
        self.labels = torch.from_numpy(rng.integers(0, classes, batch))

    def __call__(self):
        loss = self.torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
        loss.item()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


# --------------------------------------------------------------------------- the per-kernel split
def profile(step, steps):
    """Per step: the wall-clock and CPU seconds of each kernel (and 'gemm', and 'other': the
    rest of the step) of the kernels backend, from mc.trace's launch records."""
    seconds, cpu_seconds, calls = defaultdict(float), defaultdict(float), defaultdict(int)
    start, start_cpu = time.perf_counter(), time.process_time()
    with mc.trace() as t:
        for _ in range(steps):
            step()
    total, total_cpu = (time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps
    for launch in t.launches:
        seconds[launch["kernel"]] += launch["seconds"]
        cpu_seconds[launch["kernel"]] += launch["cpu_seconds"]
        calls[launch["kernel"]] += 1
    split = {name: s / steps for name, s in seconds.items()}
    split["other"] = total - sum(split.values())
    cpu = {name: s / steps for name, s in cpu_seconds.items()}
    cpu["other"] = total_cpu - sum(cpu.values())
    order = sorted(split, key=lambda name: -cpu[name])
    return dict(step=total, step_cpu=total_cpu, seconds={name: split[name] for name in order},
                cpu_seconds={name: cpu[name] for name in order},
                calls={name: c // steps for name, c in calls.items()})


# --------------------------------------------------------------------------- main
def measure(network, runners, repeats, warmup, torch_threads):
    steps = {}
    for runner in runners:
        if runner == "torch":
            try:
                steps[runner] = TorchStep(network, torch_threads)
            except ImportError:
                print("  torch: not importable, skipped", file=sys.stderr)
                continue
        else:
            steps[runner] = MinicnnStep(network, runner, threads=torch_threads)
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {runner: [] for runner in steps}
    cpu_times = {runner: [] for runner in steps}
    for _ in range(repeats):
        for runner, step in steps.items():   # interleaved: a busy spell hits every runner alike
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[runner].append(time.perf_counter() - start)
            cpu_times[runner].append(time.process_time() - start_cpu)
    return steps, times, cpu_times


def machine_load():
    """The load average and the CPU pressure line: how quiet the machine was."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        pressure = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pressure = "n/a"
    return f"load average {load}; cpu pressure: {pressure}"


def table(results):
    lines = [f"{'threads':>7} {'network':<9} {'runner':<10} {'median ms':>10} {'min..max ms':>17} {'x torch':>8} "
             f"{'cpu ms':>8}"]
    for threads, networks in results.items():
        for network, rows in networks.items():
            torch_ms = rows.get("torch", {}).get("median_ms")
            for runner, row in rows.items():
                ratio = f"{row['median_ms'] / torch_ms:.2f}" if torch_ms else "-"
                spread = f"{row['min_ms']:.0f}..{row['max_ms']:.0f}"
                lines.append(f"{threads:>7} {network:<9} {runner:<10} {row['median_ms']:>10.1f} {spread:>17} "
                             f"{ratio:>8} {row['cpu_median_ms']:>8.0f}")
    return "\n".join(lines)


NETWORK_NAMES = {"small": "alexnet_small, b64, 1x28x28", "alexnet": "paper AlexNet, b16, 3x227x227"}


def markdown(results):
    """README's table of the results: each network and thread count, the three runners, kernels / PyTorch."""
    lines = ["| network | threads | reference (NumPy) | kernels (host build) | PyTorch CPU | kernels / PyTorch |",
             "|---|---|---|---|---|---|"]
    for threads, networks in results.items():
        for network, rows in networks.items():
            def cell(runner):
                return f"{rows[runner]['median_ms']:.0f} ms" if runner in rows else "-"
            ratio = (f"{rows['kernels']['median_ms'] / rows['torch']['median_ms']:.2f}x"
                     if "kernels" in rows and "torch" in rows else "-")
            lines.append(f"| {NETWORK_NAMES[network]} | {threads} | {cell('reference')} | {cell('kernels')} | "
                         f"{cell('torch')} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per runner (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[available_cores()],
                        help="minicnn's kernel threads and PyTorch's, the same on both sides; several numbers "
                             "measure each in turn (default: every core this process may use)")
    parser.add_argument("--profile", action="store_true", help="the kernels runner's per-kernel time split")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", metavar="JSON",
                        help="print README's table of the results in this JSON file (written by --json) and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())["results"]))
        return

    from minicnn.backends import host
    results, profiles = {}, {}
    load = {"before": machine_load()}
    print(f"before: {load['before']}")
    for threads in args.threads:
        backends.set_num_threads(threads)
        results[threads], profiles[threads] = {}, {}
        for network in args.networks:
            steps, times, cpu_times = measure(network, args.runners, args.repeats, args.warmup, threads)
            results[threads][network] = {runner: dict(median_ms=1e3 * statistics.median(t), min_ms=1e3 * min(t),
                                                      max_ms=1e3 * max(t), all_ms=[round(1e3 * s, 2) for s in t],
                                                      cpu_median_ms=1e3 * statistics.median(cpu_times[runner]))
                                         for runner, t in times.items()}
            if args.profile and "kernels" in steps:
                profiles[threads][network] = profile(steps["kernels"], max(2, args.repeats // 2))
    load["after"] = machine_load()
    print(table(results))
    for threads, networks in profiles.items():
        for network, p in networks.items():
            print(f"\nwhere the kernels backend's {network} step goes ({1e3 * p['step']:.0f} ms, "
                  f"{1e3 * p['step_cpu']:.0f} ms of CPU, {threads} threads):")
            print(f"  {'':<32} {'ms':>8} {'cpu ms':>8} {'cpu %':>6}  calls")
            for name, seconds in p["seconds"].items():
                cpu = p["cpu_seconds"][name]
                print(f"  {name:<32} {1e3 * seconds:8.1f} {1e3 * cpu:8.1f} {100 * cpu / p['step_cpu']:5.1f}%  "
                      f"{p['calls'].get(name, '')}")
    print(f"\nafter: {load['after']}")
    if args.json:
        info = dict(machine=platform.node(), processor=platform.processor(), cores=available_cores(),
                    omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), threads=args.threads,
                    repeats=args.repeats, warmup=args.warmup, numpy=np.__version__, load=load)
        try:
            import torch
            info["torch"] = torch.__version__
        except ImportError:
            pass
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(info=info, results=results, profiles=profiles), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
