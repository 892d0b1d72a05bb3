"""mc.trace: what a step runs, op by op and kernel by kernel, with its work and its time.

    with mc.trace(model=model) as t:
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(t)              # one row per op run (forward, backward, the optimizer's step), and under
                          # each op one row per kernel launch or GEMM it made: count, work, time, shapes
    print(t.summary())    # time by op and by kernel, each with its share of the step
    t.to_json()           # the same records, for a notebook or a plot

What a trace watches, only inside its block:

- ops, through autograd.observe: each Function's forward and backward, and each optimizer's
  update (phase "step"), which runs outside the graph (optim.py announces it);
- launches: every loader's ``run(kernel, count, *args)`` and ``gemm(a, b, out, trans_a,
  trans_b)`` (the csrc kernels on the CPU or a GPU: backends/kernels.py), and on the NumPy
  reference backend each of its methods (conv2d_forward, lrn_backward, sgd_update, ...):
  there the "kernels" are NumPy functions.

The work is computed from the shapes. A GEMM does 2*M*N*K floating-point operations (a
multiply and an add per term) for each matrix of its batch; so do the reference's
convolution and linear methods, which are GEMMs. Other kernels are listed with no FLOPs:
they do a few operations per element and are limited by memory, so their bytes tell their
cost. Bytes: the sizes of a launch's array arguments (for a NumPy method also its results),
each counted once - the least memory traffic the launch can have.

Time is wall time (time.perf_counter); each launch record also holds the process's CPU
time over the launch, all threads (``cpu_seconds``: benchmarks/cpu_step.py --profile
reads it). A GPU runs launches asynchronously, so inside a
trace, and only there, the GPU is waited for (CuPy's current stream synchronised) before
and after each op and each launch: every launch's time is then its own, at the price of
the overlap an untraced step has. Outside a trace nothing waits. The rows of an op add up
to less than the op's time: the rest is Python and array glue inside the op (NumPy or CuPy
calls that are no kernel of ours, e.g. an elementwise add).

``MINICNN_TRACE=1`` traces a whole script, from ``import minicnn`` to its exit, and prints
the table and the summary when it ends.
"""

import atexit
import contextlib
import functools
import inspect
import json
import os
import sys
import time

import numpy as np

from . import autograd
from .backends.base import Backend
from .device import is_array


# --------------------------------------------------------------------------- the work of one launch
def gemm_dimensions(a, b, out, trans_a, trans_b):
    """(batch, M, N, K) of out = op(a) @ op(b): op(a) is (M, K), op(b) (K, N), out (batch, M, N)."""
    m, k = (a.shape[-1], a.shape[-2]) if trans_a else (a.shape[-2], a.shape[-1])
    n = b.shape[-2] if trans_b else b.shape[-1]
    batch = out.shape[0] if out.ndim == 3 else 1
    return batch, m, n, k


def _bytes(arrays):
    """The bytes of the distinct arrays (an array updated in place is read and written, counted once)."""
    seen = {}
    for a in arrays:
        seen[id(a)] = a.nbytes
    return int(sum(seen.values()))


def _arrays(values):
    """The arrays among a call's arguments or results (a tuple of them is opened)."""
    found = []
    for v in values:
        if isinstance(v, tuple):
            found += _arrays(v)
        elif is_array(v):
            found.append(v)
    return found


def _reference_flops(method, args, result):
    """FLOPs of the reference methods that are GEMMs (2 per multiply-add); 0 for the others."""
    if method == "conv2d_forward":                 # (x, w, ...) -> y: each output sums C/g*kh*kw products
        w, y = args[1], result
        return 2 * y.size * int(np.prod(w.shape[1:]))
    if method == "conv2d_backward":                # (x, w, dy, ...) -> (dx, dw, db): one GEMM each for dx, dw
        w, dy = args[1], args[2]
        gemms = sum(g is not None for g in result[:2])
        return gemms * 2 * dy.size * int(np.prod(w.shape[1:]))
    if method == "linear_forward":                 # (x, w, b) -> y (N, out): in products per output
        return 2 * result.size * args[1].shape[1]
    if method == "linear_backward":                # (x, w, dy, ...) -> (dx, dw, db)
        gemms = sum(g is not None for g in result[:2])
        return gemms * 2 * args[2].size * args[1].shape[1]
    return 0


# --------------------------------------------------------------------------- waiting for a GPU
def _wait_for_gpu():
    """Wait until the GPU has done the work minicnn queued on it (nothing to do on the CPU).
    Called around each op and launch while a trace is recording, and never otherwise."""
    cuda = sys.modules.get(__package__ + ".backends.cuda")
    if cuda is not None:                 # imported: some CUDA backend may have queued work
        cuda.synchronize()


# --------------------------------------------------------------------------- the watching
_active = []         # the traces recording now (innermost last): every launch goes to each of them
_restore = []        # (class, attribute name, what was there or None) for each method wrapped
_launch_depth = 0    # > 0 inside a watched call: a call it makes is part of it, not a launch of its own


def _timed(call):
    """Run call(): (its result, its seconds), the GPU idle before and after."""
    _wait_for_gpu()
    start = time.perf_counter()
    result = call()
    _wait_for_gpu()
    return result, time.perf_counter() - start


def _watched(make_record):
    """Wrap a method so that each outermost call becomes one launch record of every active trace.
    make_record(instance, arguments, result, seconds) -> the record (a dict); arguments are the
    call's, in the order of the method's signature however they were passed (``*args`` as a tuple)."""
    def wrap(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def watched(instance, *args, **kwargs):
            global _launch_depth
            if _launch_depth or not _active:
                return method(instance, *args, **kwargs)
            _launch_depth += 1
            start_cpu = time.process_time()
            try:
                result, seconds = _timed(lambda: method(instance, *args, **kwargs))
            finally:
                _launch_depth -= 1
            arguments = tuple(signature.bind(instance, *args, **kwargs).arguments.values())[1:]
            record = make_record(instance, arguments, result, seconds)
            # the process's CPU time, all its threads: below threads x seconds, the launch waited for a core
            record["cpu_seconds"] = time.process_time() - start_cpu
            for trace in _active:
                trace._launched(dict(record))
            return result
        return watched
    return wrap


def _kernel_record(loader, args, result, seconds):
    kernel, count, arguments = args
    arrays = _arrays(arguments)
    return dict(kernel=kernel, runner=loader.name, count=int(count), shapes=[list(a.shape) for a in arrays],
                outputs=[], gemm=None, flops=0, bytes=_bytes(arrays), seconds=seconds)


def _gemm_record(loader, args, result, seconds):
    a, b, out, trans_a, trans_b = args[:5]
    batch, m, n, k = gemm_dimensions(a, b, out, trans_a, trans_b)
    return dict(kernel="gemm", runner=loader.name, count=None, shapes=[list(x.shape) for x in (a, b, out)],
                outputs=[], gemm=dict(batch=batch, m=m, n=n, k=k, trans_a=bool(trans_a), trans_b=bool(trans_b)),
                flops=2 * batch * m * n * k, bytes=_bytes((a, b, out)), seconds=seconds)


def _method_record(name):
    def record(backend, args, result, seconds):
        results = result if isinstance(result, tuple) else (result,)
        arrays = _arrays(args) + _arrays(results)
        return dict(kernel=name, runner=backend.name, count=None, shapes=[list(a.shape) for a in _arrays(args)],
                    outputs=[list(a.shape) for a in _arrays(results)], gemm=None,
                    flops=_reference_flops(name, args, result), bytes=_bytes(arrays), seconds=seconds)
    return record


def _watched_methods():
    """(class, method name, record maker) of every call a trace records as a launch."""
    from .backends import cuda, host
    from .backends.reference import ReferenceBackend
    watched = []
    for loader in (host.HostLoader, cuda.RawKernelLoader, cuda.Pybind11Loader):
        watched += [(loader, "run", _kernel_record), (loader, "gemm", _gemm_record)]
    for name in sorted(Backend.__abstractmethods__):          # the backend interface, NumPy's side of it
        watched.append((ReferenceBackend, name, _method_record(name)))
    return watched


def _start_watching():
    for cls, name, make_record in _watched_methods():
        _restore.append((cls, name, cls.__dict__.get(name)))
        setattr(cls, name, _watched(make_record)(getattr(cls, name)))


def _stop_watching():
    while _restore:
        cls, name, original = _restore.pop()
        if original is None:
            delattr(cls, name)
        else:
            setattr(cls, name, original)


# --------------------------------------------------------------------------- the trace
def _shape_text(shape):
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


class Trace:
    """The records of one block: ``records`` is a list of dicts in the order things ran.

    An op record: kind "op", op (the Function's name), module (its name in the model given
    to trace, or None), phase ("forward", "backward" or "step"), shapes (forward: the input
    shapes and the output's; backward: the gradient's), seconds, depth (0 unless an op runs
    inside another), and flops, bytes and launches, the sums of its launches.
    A launch record: kind "launch", op, module and phase of the op it ran under (None outside
    every op), kernel (a csrc kernel, "gemm", or a NumPy method), runner ("host",
    "rawkernel", "pybind11" or "reference"), count (the indices of a kernel's grid-stride
    loop), shapes (of its array arguments; a GEMM's a, b and out), outputs (the shapes a NumPy
    method returns; a kernel writes into its arguments), gemm (batch, m, n, k), flops, bytes, seconds.
    """

    def __init__(self, model=None):
        self.records = []
        self.seconds = None              # the whole block's wall time, once it has ended
        self._module_names = {} if model is None else {id(m): name for name, m in model.named_modules() if name}
        self._open = []                  # the op records started and not yet finished
        self._stack = None

    # ------------------------------------------------------------ the block
    def __enter__(self):
        if self._stack is not None or self.seconds is not None:
            raise RuntimeError("a trace records one block; make a new mc.trace() for another")
        stack = contextlib.ExitStack()
        stack.enter_context(autograd.observe(self))
        if not _active:
            try:
                _start_watching()
            except BaseException:
                _stop_watching()
                stack.close()
                raise
        _active.append(self)
        stack.callback(self._leave)
        self._stack = stack
        _wait_for_gpu()
        self._start = time.perf_counter()
        return self

    def _leave(self):
        _active.remove(self)
        if not _active:
            _stop_watching()

    def __exit__(self, *exc):
        try:
            _wait_for_gpu()
            self.seconds = time.perf_counter() - self._start
        finally:
            self._stack.close()          # the observer and the wrapped methods go, even after an error
        return False

    # ------------------------------------------------------------ what autograd.observe calls
    def op_started(self, node, phase):
        _wait_for_gpu()
        module = self._module_names.get(id(getattr(node, "module", None)))
        record = dict(kind="op", op=node.name, module=module, phase=phase, shapes=[], depth=len(self._open),
                      flops=0, bytes=0, launches=0, seconds=None)
        self.records.append(record)
        self._open.append((record, time.perf_counter()))

    def op_finished(self, node, phase, inputs, output):
        _wait_for_gpu()
        record, start = self._open.pop()
        record["seconds"] = time.perf_counter() - start
        if phase == "forward":
            outputs = output if isinstance(output, tuple) else (output,)
            record["shapes"] = [list(a.shape) for a in inputs if hasattr(a, "shape")] + [list(outputs[0].shape)]
        elif phase == "backward":
            record["shapes"] = [list(node.output_shape)]

    def _launched(self, launch):
        op = self._open[-1][0] if self._open else None
        launch.update(kind="launch", op=op and op["op"], module=op and op["module"], phase=op and op["phase"])
        self.records.append(launch)
        for record, _ in self._open:                      # an op's work includes that of the ops inside it
            record["flops"] += launch["flops"]
            record["bytes"] += launch["bytes"]
            record["launches"] += 1

    # ------------------------------------------------------------ reading it
    @property
    def ops(self):
        return [r for r in self.records if r["kind"] == "op"]

    @property
    def launches(self):
        return [r for r in self.records if r["kind"] == "launch"]

    def _total(self):
        if self.seconds is not None:
            return self.seconds
        return time.perf_counter() - self._start if self._stack is not None else 0.0

    def to_dict(self):
        return {"seconds": self._total(), "records": [dict(r) for r in self.records]}

    def to_json(self, indent=None):
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self):
        return Summary(self)

    def __str__(self):
        runners = sorted({r["runner"] for r in self.launches})
        lines = [f"trace: {len(self.ops)} ops, {len(self.launches)} launches, {self._total() * 1e3:.1f} ms of wall "
                 f"time; launches on {', '.join(runners) or 'nothing'}"]
        header = f"{'op':<34} {'kernel':<30} {'count':>11} {'GFLOP':>8} {'MB':>9} {'ms':>9}  shapes"
        lines += [header, "-" * len(header)]
        for r in self.records:
            if r["kind"] == "op":
                name = "  " * r["depth"] + _op_name(r)
                if r["phase"] == "forward" and r["shapes"]:
                    shapes = ", ".join(_shape_text(s) for s in r["shapes"][:-1]) + f" -> {_shape_text(r['shapes'][-1])}"
                else:
                    shapes = ("grad " + _shape_text(r["shapes"][0])) if r["shapes"] else ""
                lines.append(f"{name:<34} {'':<30} {'':>11} {_gflop(r['flops']):>8} {r['bytes'] / 1e6:>9.2f} "
                             f"{_ms(r['seconds']):>9}  {shapes}")
            else:
                if r["gemm"]:
                    g = r["gemm"]
                    shapes = f"{g['batch']} x [{g['m']}x{g['k']} @ {g['k']}x{g['n']}]"
                else:
                    shapes = ", ".join(_shape_text(s) for s in r["shapes"])
                    if r["outputs"]:
                        shapes += " -> " + ", ".join(_shape_text(s) for s in r["outputs"])
                count = "" if r["count"] is None else f"{r['count']:,}"
                indent = "  " if r["op"] is not None else ""
                lines.append(f"{'':<34} {indent + r['kernel']:<30} {count:>11} {_gflop(r['flops']):>8} "
                             f"{r['bytes'] / 1e6:>9.2f} {_ms(r['seconds']):>9}  {shapes}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<mc.trace: {len(self.ops)} ops, {len(self.launches)} launches>"


def _op_name(record):
    """"Conv2d conv1 forward"; an optimizer's update is just "SGD.step"."""
    module = f" {record['module']}" if record["module"] else ""
    phase = "" if record["phase"] == "step" else f" {record['phase']}"
    return f"{record['op']}{module}{phase}"


def _gflop(flops):
    return f"{flops / 1e9:.3g}" if flops else ""


def _ms(seconds):
    return "" if seconds is None else f"{seconds * 1e3:.2f}"


class Summary:
    """A trace's time grouped by op ("Conv2d backward") and by kernel, each with its share of the
    block's wall time. What no op (or no launch) took is a row of its own, so shares add up to 1.

    by_op, by_kernel: lists of dicts (name, calls, seconds, share, flops, bytes), slowest first.
    """

    def __init__(self, trace):
        self.seconds = total = trace._total()
        self.by_op = self._group(((_op_name(dict(r, module=None)), r) for r in trace.ops if r["depth"] == 0), total,
                                 "(outside ops: Python between them)")
        self.by_kernel = self._group(((r["kernel"], r) for r in trace.launches), total,
                                     "(outside launches: Python and array glue)")

    @staticmethod
    def _group(keyed, total, rest_name):
        groups = {}
        for name, r in keyed:
            g = groups.setdefault(name, dict(name=name, calls=0, seconds=0.0, flops=0, bytes=0))
            g["calls"] += 1
            g["seconds"] += r["seconds"] or 0.0
            g["flops"] += r["flops"]
            g["bytes"] += r["bytes"]
        rows = sorted(groups.values(), key=lambda g: -g["seconds"])
        rest = total - sum(g["seconds"] for g in rows)
        rows.append(dict(name=rest_name, calls=0, seconds=max(rest, 0.0), flops=0, bytes=0))
        for g in rows:
            g["share"] = g["seconds"] / total if total > 0 else 0.0
        return rows

    def to_dict(self):
        return {"seconds": self.seconds, "by_op": self.by_op, "by_kernel": self.by_kernel}

    def __str__(self):
        lines = [f"summary: {self.seconds * 1e3:.1f} ms of wall time"]
        for title, rows in (("op", self.by_op), ("kernel", self.by_kernel)):
            header = f"{'by ' + title:<42} {'calls':>6} {'ms':>10} {'share':>7} {'GFLOP':>8} {'GFLOP/s':>8} {'MB':>9}"
            lines += ["", header, "-" * len(header)]
            for g in rows:
                rate = f"{g['flops'] / g['seconds'] / 1e9:.1f}" if g["flops"] and g["seconds"] > 0 else ""
                calls = str(g["calls"]) if g["calls"] else ""
                lines.append(f"{g['name']:<42} {calls:>6} {g['seconds'] * 1e3:>10.2f} {g['share']:>7.1%} "
                             f"{_gflop(g['flops']):>8} {rate:>8} {g['bytes'] / 1e6:>9.2f}")
        return "\n".join(lines)

    __repr__ = __str__


def trace(model=None):
    """A context manager that records every op, kernel launch and GEMM run inside it (see the
    module's docstring). model: names each op's layer (e.g. "Conv2d conv1 forward")."""
    return Trace(model=model)


# --------------------------------------------------------------------------- MINICNN_TRACE=1
def trace_script_if_asked():
    """Under MINICNN_TRACE=1 (set when minicnn is imported): trace until the script exits, then print."""
    if os.environ.get("MINICNN_TRACE", "0") in ("", "0"):
        return None
    whole = Trace()
    whole.__enter__()

    def report():
        whole.__exit__(None, None, None)
        print(whole)
        print()
        print(whole.summary())
    atexit.register(report)
    return whole
