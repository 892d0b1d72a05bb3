"""Every op of a training step on the CPU, forward and backward, at the networks' real shapes:
minicnn's kernels (host build) against its NumPy reference and against PyTorch.

    python benchmarks/cpu_ops.py                        # both networks, every op
    python benchmarks/cpu_ops.py --networks small --repeats 9 --json out.json
    python benchmarks/cpu_ops.py --threads 1            # one thread on every side
    python benchmarks/cpu_ops.py --markdown out.json    # docs/kernels.md's table of a run's JSON

The networks are benchmarks/cpu_step.py's (small: alexnet_small b64 1x28x28; alexnet: the
paper's, b16 3x227x227). One forward pass on the reference records every layer's input; then
each layer's forward and backward is timed on its own, through the backend interface
(backends/base.py: the very calls the ops make, without the autograd around them), for:

    kernels    minicnn's csrc kernels compiled for the host (minicnn._host), --threads threads
    reference  minicnn's NumPy reference backend, its BLAS on --threads threads
    torch      PyTorch on the CPU (torch.nn.functional; backward by torch.autograd.grad on a kept
               graph), --threads threads

The backward rows ask for what a training step asks: conv1 computes no input gradient.
"step" is the SGD update of all the network's parameters (momentum 0.9, weight decay 5e-4);
"loss" is the softmax cross-entropy. Runners are interleaved (one call of each, then again)
after warm-up calls, and each time is the median of --repeats calls (more for a short op:
up to 200, about 0.2 s of calls). A last table times the
fixed cost of one op call through the whole stack (checks, Function, autograd graph) on a
tiny tensor, forward and backward, where the arithmetic is nothing.

Measure on a quiet machine: the script prints the load average and /proc/pressure/cpu
before and after; with other programs running every number moves, PyTorch's most.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# As benchmarks/cpu_step.py: OpenBLAS's threads (the reference's GEMMs) sleep right after each
# call instead of spinning into the next runner's time (read when NumPy loads OpenBLAS).
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
from minicnn.ops.conv import Conv2d  # noqa: E402
from minicnn.ops.pool import MaxPool2d  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_step import NETWORKS, machine_load  # noqa: E402  the networks and the load reading, written once
from minicnn.random import dropout_threshold_and_scale  # noqa: E402

RUNNERS = ("kernels", "reference", "torch")


# --------------------------------------------------------------------------- the ops of one layer
class LayerOps:
    """The forward and backward calls of one layer, for each runner: a dict runner -> callable."""

    def __init__(self, name, kind, shape, forward, backward):
        self.name, self.kind, self.shape = name, kind, shape
        self.forward, self.backward = forward, backward


def conv_ops(name, layer, x, need_dx, torch):
    w, b = layer.weight.data, layer.bias.data
    # the op's own check turns the layer's arguments into the backend's (pairs, four paddings)
    _, _, _, stride, pad, groups, dilation = Conv2d.check(mc.Tensor(x), layer.weight, layer.bias, layer.stride,
                                                          layer.padding, layer.groups, layer.dilation)
    geometry = (stride, pad, groups, dilation)
    dy = np.random.default_rng(1).standard_normal(F.conv2d(mc.Tensor(x), layer.weight, layer.bias, *geometry)
                                                  .shape).astype(x.dtype)

    def minicnn_calls(backend):
        return (lambda: backend.conv2d_forward(x, w, b, *geometry),
                lambda: backend.conv2d_backward(x, w, dy, *geometry, need_dx=need_dx, need_dw=True, need_db=True))

    forward, backward = {}, {}
    for runner, backend in minicnn_backends().items():
        forward[runner], backward[runner] = minicnn_calls(backend)
    if torch is not None:
        top, bottom, left, right = pad
        assert top == bottom and left == right, "the benchmark's networks pad symmetrically"
        tx = torch.from_numpy(x).requires_grad_(need_dx)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        args = dict(stride=stride, padding=(top, left), dilation=dilation, groups=groups)
        forward["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, tb, **args)
        ty = torch.nn.functional.conv2d(tx, tw, tb, **args)
        inputs = [tx, tw, tb] if need_dx else [tw, tb]
        tdy = torch.from_numpy(dy)
        backward["torch"] = lambda: torch.autograd.grad(ty, inputs, tdy, retain_graph=True)
    return LayerOps(name, "conv2d", x.shape, forward, backward)


def linear_ops(name, layer, x, torch):
    w, b = layer.weight.data, layer.bias.data
    dy = np.random.default_rng(1).standard_normal((x.shape[0], w.shape[0])).astype(x.dtype)
    forward, backward = {}, {}
    for runner, backend in minicnn_backends().items():
        forward[runner] = (lambda be: lambda: be.linear_forward(x, w, b))(backend)
        backward[runner] = (lambda be: lambda: be.linear_backward(x, w, dy, True, True, True))(backend)
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        forward["torch"] = lambda: torch.nn.functional.linear(tx, tw, tb)
        ty = torch.nn.functional.linear(tx, tw, tb)
        tdy = torch.from_numpy(dy)
        backward["torch"] = lambda: torch.autograd.grad(ty, [tx, tw, tb], tdy, retain_graph=True)
    return LayerOps(name, "linear", x.shape, forward, backward)


def pointwise_ops(name, kind, x, torch, minicnn_forward, minicnn_backward, torch_forward):
    """An op whose backward needs the forward's results: minicnn_forward(backend) -> saved state,
    minicnn_backward(backend, saved, dy) -> dx."""
    forward, backward = {}, {}
    for runner, backend in minicnn_backends().items():
        saved = minicnn_forward(backend)
        dy = np.random.default_rng(1).standard_normal(np.shape(saved[0])).astype(x.dtype)
        forward[runner] = (lambda be: lambda: minicnn_forward(be))(backend)
        backward[runner] = (lambda be, s, d: lambda: minicnn_backward(be, s, d))(backend, saved, dy)
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        forward["torch"] = lambda: torch_forward(tx)
        ty = torch_forward(tx)
        tdy = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(ty.shape)).astype(x.dtype))
        backward["torch"] = lambda: torch.autograd.grad(ty, [tx], tdy, retain_graph=True)
    return LayerOps(name, kind, x.shape, forward, backward)


def layer_ops(name, layer, x, first, torch):
    """The LayerOps of one child of the network, or None for a layer with no arithmetic (Flatten)."""
    if isinstance(layer, nn.Conv2d):
        return conv_ops(name, layer, x, need_dx=not first, torch=torch)
    if isinstance(layer, nn.Linear):
        return linear_ops(name, layer, x, torch)
    tf = torch.nn.functional if torch is not None else None
    if isinstance(layer, nn.ReLU):
        return pointwise_ops(name, "relu", x, torch,
                             lambda be: (be.relu_forward(x, 0.0),),
                             lambda be, s, dy: be.relu_backward(x, dy, 0.0),
                             lambda tx: tf.relu(tx))
    if isinstance(layer, nn.LocalResponseNorm):
        size, beta, k = layer.size, layer.beta, layer.k
        alpha = layer.alpha / size if layer.divide_alpha_by_size else layer.alpha
        return pointwise_ops(name, "local_response_norm", x, torch,
                             lambda be: be.lrn_forward(x, size, alpha, beta, k),
                             lambda be, s, dy: be.lrn_backward(x, s[0], s[1], dy, size, alpha, beta, k),
                             lambda tx: tf.local_response_norm(tx, size, alpha * size, beta, k))
    if isinstance(layer, nn.MaxPool2d):
        _, kernel, stride, padding, _, _ = MaxPool2d.check(mc.Tensor(x), layer.kernel_size, layer.stride,
                                                           layer.padding, False, False)
        assert padding == (0, 0, 0, 0), "the benchmark's networks pool without padding"
        return pointwise_ops(name, "max_pool2d", x, torch,
                             lambda be: be.max_pool2d_forward(x, kernel, stride, padding),
                             lambda be, s, dy: be.max_pool2d_backward(dy, s[1], x.shape, kernel, stride, padding),
                             lambda tx: tf.max_pool2d(tx, kernel, stride))
    if isinstance(layer, nn.Dropout):
        threshold, scale = dropout_threshold_and_scale(layer.p, x.dtype)
        return pointwise_ops(name, "dropout", x, torch,
                             lambda be: (be.dropout_forward(x, threshold, scale, 7, 0),),
                             lambda be, s, dy: be.dropout_backward(dy, threshold, scale, 7, 0),
                             lambda tx: tf.dropout(tx, layer.p, True))
    if isinstance(layer, nn.Flatten):
        return None
    raise TypeError(f"cpu_ops: no benchmark for layer {name} ({type(layer).__name__})")


def loss_ops(logits, labels, torch):
    forward, backward = {}, {}
    for runner, backend in minicnn_backends().items():
        _, probs = backend.softmax_cross_entropy_forward(logits, labels)
        forward[runner] = (lambda be: lambda: be.softmax_cross_entropy_forward(logits, labels))(backend)
        backward[runner] = (lambda be, p: lambda: be.softmax_cross_entropy_backward(p, labels, 1.0))(backend, probs)
    if torch is not None:
        tx, tl = torch.from_numpy(logits).requires_grad_(), torch.from_numpy(labels)
        forward["torch"] = lambda: torch.nn.functional.cross_entropy(tx, tl)
        ty = torch.nn.functional.cross_entropy(tx, tl)
        backward["torch"] = lambda: torch.autograd.grad(ty, [tx], retain_graph=True)
    return LayerOps("loss", "cross_entropy", logits.shape, forward, backward)


def step_ops(model, torch):
    """The SGD update of every parameter (momentum 0.9, weight decay 5e-4): the 'backward' row is empty."""
    params = [p.data for p in model.parameters()]
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    forward = {}
    for runner, backend in minicnn_backends().items():
        state = [(p.copy(), np.zeros_like(p)) for p in params]

        def update(be=backend, state=state):
            for (p, v), g in zip(state, grads):
                be.sgd_update(p, g, v, 0.01, 0.9, 5e-4, False)
        forward[runner] = update
    if torch is not None:
        tparams = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g)
        optimizer = torch.optim.SGD(tparams, lr=0.01, momentum=0.9, weight_decay=5e-4)
        forward["torch"] = optimizer.step
    return LayerOps("sgd", "sgd_update", (sum(p.size for p in params),), forward, {})


_backends = None


def minicnn_backends():
    global _backends
    if _backends is None:
        _backends = {"kernels": backends.host_backend(), "reference": backends.reference_backend()}
    return _backends


def network_ops(network, torch, runners):
    """Every LayerOps of one training step of the network, in the order of the forward pass."""
    factory, batch, chw, classes = NETWORKS[network]
    mc.manual_seed(0)
    model = factory()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + chw).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    ops = []
    backends.set_cpu_backend("reference")
    try:
        for i, (name, layer) in enumerate(model.named_children()):
            op = layer_ops(name, layer, x, first=i == 0, torch=torch)
            if op is not None:
                ops.append(op)
            with mc.no_grad():
                x = layer(mc.Tensor(x)).data
    finally:
        backends.set_cpu_backend("kernels")
    ops.append(loss_ops(x, labels, torch))
    ops.append(step_ops(model, torch))
    for op in ops:   # only the runners asked for
        op.forward = {r: f for r, f in op.forward.items() if r in runners}
        op.backward = {r: f for r, f in op.backward.items() if r in runners}
    return ops


# --------------------------------------------------------------------------- timing
def median_ms(calls, repeats, warmup, threads=None):
    """runner -> median milliseconds of its call, the runners interleaved; the reference's NumPy BLAS
    on ``threads`` threads, as many as the other runners get."""
    from threadpoolctl import threadpool_limits

    def timed(runner, call):
        with threadpool_limits(threads if runner == "reference" else None, user_api="blas"):
            start = time.perf_counter()
            call()
            return time.perf_counter() - start

    longest = 0.0
    for _ in range(max(1, warmup)):
        for runner, call in calls.items():
            longest = max(longest, timed(runner, call))
    # a short op gets more calls (up to 200, about 0.2 s of them): its median is then not one
    # scheduler tick's accident
    repeats = max(repeats, min(200, int(0.2 / max(longest, 1e-6))))
    times = {runner: [] for runner in calls}
    for _ in range(repeats):
        for runner, call in calls.items():
            times[runner].append(timed(runner, call))
    return {runner: 1e3 * statistics.median(t) for runner, t in times.items()}


def fixed_cost_ms(torch, repeats):
    """One op call through the whole stack on a 1x1x4x4 tensor, forward + backward, per runner."""
    x0 = np.random.default_rng(3).standard_normal((1, 1, 4, 4)).astype(np.float32)
    w0 = np.random.default_rng(4).standard_normal((1, 1, 3, 3)).astype(np.float32)
    calls = {}
    for runner in ("kernels", "reference"):
        def call(runner=runner):
            backends.set_cpu_backend(runner)
            x = mc.Tensor(x0, requires_grad=True)
            w = mc.Tensor(w0, requires_grad=True)
            F.max_pool2d(F.local_response_norm(F.relu(F.conv2d(x, w, padding=1)), 3), 2).sum().backward()
        calls[runner] = call
    if torch is not None:
        tf = torch.nn.functional

        def call_torch():
            x = torch.from_numpy(x0).requires_grad_()
            w = torch.from_numpy(w0).requires_grad_()
            tf.max_pool2d(tf.local_response_norm(tf.relu(tf.conv2d(x, w, padding=1)), 3), 2).sum().backward()
        calls["torch"] = call_torch
    try:
        result = median_ms(calls, repeats * 20, 20)
    finally:
        backends.set_cpu_backend("kernels")
    return {runner: ms / 4 for runner, ms in result.items()}     # four ops per call


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(rows):
    head = (f"{'network':<8} {'op':<22} {'dir':<4} {'input shape':<18} {'kernels':>9} {'reference':>10} "
            f"{'torch':>8} {'k/ref':>6} {'k/torch':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        cells = [f"{r[k]:9.2f}" if r.get(k) is not None else f"{'-':>9}" for k in ("kernels", "reference", "torch")]
        lines.append(f"{r['network']:<8} {r['layer'] + ' ' + r['op']:<22.22} {r['direction']:<4} {shape:<18} "
                     f"{cells[0]} {cells[1]:>10} {cells[2]:>8} {ratio(r.get('kernels'), r.get('reference')):>6} "
                     f"{ratio(r.get('kernels'), r.get('torch')):>7}")
    return "\n".join(lines)


def markdown(rows):
    """docs/kernels.md's table of a run: every op, the three times and the two ratios."""
    lines = ["| network | op | | input | kernels | reference | PyTorch | kernels / reference | kernels / PyTorch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        times = [f"{r[k]:.2f} ms" if r.get(k) is not None else "-" for k in ("kernels", "reference", "torch")]
        lines.append(f"| {r['network']} | {r['layer']} {r['op']} | {r['direction']} | {'x'.join(map(str, r['shape']))} | "
                     f"{' | '.join(times)} | {ratio(r.get('kernels'), r.get('reference'))} | "
                     f"{ratio(r.get('kernels'), r.get('torch'))} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per runner and op (the median is kept)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="minicnn's kernel threads and PyTorch's intra-op threads (default: every core)")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--markdown", metavar="JSON",
                        help="print docs/kernels.md's table of the rows in this JSON file (written by --json) and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())["rows"]))
        return

    backends.set_num_threads(args.threads)
    torch = None
    if "torch" in args.runners:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("torch is not importable: its column stays empty", file=sys.stderr)
    print(f"before: {machine_load()}")
    rows = []
    for network in args.networks:
        for op in network_ops(network, torch, args.runners):
            for direction, calls in (("fwd", op.forward), ("bwd", op.backward)):
                if calls:
                    rows.append(dict(network=network, layer=op.name, op=op.kind, direction=direction,
                                     shape=list(op.shape), **median_ms(calls, args.repeats, args.warmup,
                                                                       args.threads)))
    fixed = fixed_cost_ms(torch, args.repeats)
    print(table(rows))
    totals = {}
    for network in args.networks:
        totals[network] = {runner: sum(r[runner] for r in rows if r["network"] == network and r.get(runner))
                           for runner in args.runners if any(r.get(runner) for r in rows)}
        print(f"sum over {network}'s ops (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in totals[network].items()))
    print("slower than the reference: " + (", ".join(f"{r['network']} {r['layer']} {r['direction']}" for r in rows
                                                     if r.get("reference") and r["kernels"] > r["reference"])
                                           or "none"))
    print("fixed cost of one op call (conv2d, relu, LRN, max_pool2d on 1x1x4x4, forward + backward, "
          "per op, us): " + ", ".join(f"{k} {1e3 * v:.0f}" for k, v in fixed.items()))
    print(f"after: {machine_load()}")
    print(f"threads: minicnn {backends.get_num_threads()}" + (f", torch {torch.get_num_threads()}" if torch else ""))
    if args.json:
        info = dict(machine=platform.node(), processor=platform.processor(), cores=available_cores(),
                    threads=args.threads, repeats=args.repeats, numpy=np.__version__,
                    torch=getattr(torch, "__version__", None), load=machine_load())
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(info=info, rows=rows, totals=totals, fixed_cost_ms=fixed), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
