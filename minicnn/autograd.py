"""The autograd: Function (one op, one graph node), and backward() over the graph they form.

An op is a subclass of Function, as in PyTorch's custom ``autograd.Function``:

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):                 # arrays in, array out
            y = np.exp(x)
            ctx.save_for_backward(y)         # what backward needs, said explicitly
            return y

        @staticmethod
        def backward(ctx, grad_output):      # one gradient per forward input
            (y,) = ctx.saved_tensors
            return grad_output * y           # d exp(x)/dx = exp(x)

    y = Exp.apply(x)                         # x, y: Tensors; y.grad_fn is the Exp node

``apply`` runs the op's argument checks (``check``), then ``forward`` on the
Tensors' arrays, and, when an input requires a gradient, records the node: the
Function instance itself is the ``ctx`` and becomes the output's ``grad_fn``.
Its ``next_functions`` are the nodes of its inputs: their ``grad_fn``, or, for a
leaf (a tensor the user made, e.g. a parameter), an AccumulateGrad node that adds
the gradient into ``leaf.grad``. ``backward()`` walks these nodes from the loss
back to the leaves, each node after every node that feeds it a gradient.

A graph is used once: after backward() each node frees what it saved, and a
second backward() through it raises RuntimeError unless the first one was called
with ``retain_graph=True``. (PyTorch raises only for nodes that saved arrays;
minicnn raises for every node, so the rule is one line.)

Gradients are plain NumPy/CuPy arrays (``tensor.grad``), not Tensors: there are
no higher-order derivatives here.
"""

import contextlib
import itertools

_grad_enabled = True
_current_module = None      # the innermost Module whose forward is running (nodes remember it)
_observers = []             # who watches ops run: mc.trace, the ONNX exporter (see observe below)


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded: outputs never require grad.

    Blocks nest: leaving an inner block restores what the outer one set."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record the graph again inside a no_grad block."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = True
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


@contextlib.contextmanager
def module_scope(module):
    """While ``module``'s forward runs, the nodes it records remember it (``node.module``),
    so a drawing can group a network's ops by layer."""
    global _current_module
    previous = _current_module
    _current_module = module
    try:
        yield
    finally:
        _current_module = previous


@contextlib.contextmanager
def observe(observer):
    """Inside this block ``observer`` sees every op run:

        observer.op_started(node, phase)                      phase: "forward", "backward" or "step"
        observer.op_finished(node, phase, inputs, output)     forward: the apply() arguments and the
                                                              output Tensor; otherwise None, None
    Phase "step" is work outside the graph announced by observed_step (an optimizer's update).
    mc.trace times ops this way; the ONNX exporter records the forward graph with it."""
    _observers.append(observer)
    try:
        yield observer
    finally:
        _observers.remove(observer)


class _OutsideTheGraph:
    """What observers see of work no Function records: a name, and no module or shape."""

    module = None
    output_shape = ()

    def __init__(self, name):
        self.name = name


@contextlib.contextmanager
def observed_step(name):
    """Observers see the work inside this block as one op called ``name``, in phase "step":
    an optimizer's update, which runs outside the graph, shows in mc.trace as "SGD.step"."""
    node = _OutsideTheGraph(name)
    for observer in _observers:
        observer.op_started(node, "step")
    yield
    for observer in _observers:
        observer.op_finished(node, "step", None, None)


class RemovableHandle:
    """What register_hook and the Module hooks return: ``handle.remove()`` takes the hook out."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks          # the dict the hook was put in
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)


def _run_hooks(hooks, grad):
    """Each hook sees the gradient; one that returns an array replaces it."""
    for hook in list(hooks.values()):
        result = hook(grad)
        if result is not None:
            grad = result
    return grad


class Function:
    """One op and, once applied, one node of the graph (the ``ctx`` of forward and backward).

    Subclasses define ``forward(ctx, *args)`` and ``backward(ctx, grad_output)``
    (both static methods), and may define ``check(*args)``, which validates the
    arguments and returns them normalised, before any array is touched.

    On the node:
      needs_input_grad  one bool per forward argument: is it a Tensor that requires grad?
      next_functions    one entry per forward argument: the node its gradient goes to, or None
      output_shape      the shape of the output (what a graph drawing shows)
      module            the Module whose forward recorded the node, or None
      save_for_backward(*arrays) / saved_tensors: the arrays backward needs
      hyper-parameters: plain attributes (ctx.stride = ...)
    """

    def __init__(self):
        self.needs_input_grad = ()
        self.next_functions = ()
        self.output_shape = ()
        self.module = None
        self._saved = ()
        self._saved_inputs = ()      # (input Tensor, its version) for inputs whose arrays were saved
        self._released = False
        self._hooks = {}             # Tensor.register_hook on this node's output
        self._retained_output = None  # weakref to the output, after output.retain_grad()

    @property
    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name} node, output shape {self.output_shape}>"

    # ------------------------------------------------------------ what backward needs
    def save_for_backward(self, *arrays):
        self._saved = arrays

    @property
    def saved_tensors(self):
        if self._released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the arrays saved for {self.name}.backward "
                "were freed after the first backward(). Pass retain_graph=True to the first backward() "
                "to keep them.")
        for tensor, version in self._saved_inputs:
            if tensor._version != version:
                raise RuntimeError(
                    f"an input of {self.name} (shape {tensor.shape}) was modified after the forward that saved "
                    f"it (version {version}, now {tensor._version}), so its gradient would be computed with "
                    "the new values. Call backward() before optimizer.step() or before changing .data.")
        return self._saved

    def release(self):
        """Free the saved arrays (after backward, unless the graph is retained)."""
        self._saved = ()
        self._saved_inputs = ()
        self._released = True

    # ------------------------------------------------------------ the op
    @staticmethod
    def check(*args):
        """Validate and normalise the arguments of apply(); the default accepts them as they are."""
        return args

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        """Check the arguments, run forward on the arrays, and record the node when a gradient is needed.

        forward returns one array (the output Tensor's data), or a tuple whose
        first array is the output and the rest extra outputs that carry no
        gradient (such as max pooling's indices); apply then returns a tuple of Tensors.
        """
        from .tensor import Tensor      # tensor.py builds on this module

        args = cls.check(*args)
        ctx = cls()
        ctx.module = _current_module
        recording = _grad_enabled
        ctx.needs_input_grad = tuple(recording and isinstance(a, Tensor) and a.requires_grad for a in args)
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        for observer in _observers:
            observer.op_started(ctx, "forward")
        out = cls.forward(ctx, *arrays)
        extra = ()
        if isinstance(out, tuple):
            out, *extra = out
        result = Tensor(out)
        ctx.output_shape = result.shape
        if any(ctx.needs_input_grad):
            ctx._saved_inputs = tuple((a, a._version) for a in args
                                      if isinstance(a, Tensor) and any(s is a.data for s in ctx._saved))
            ctx.next_functions = tuple(a._gradient_node() if need else None
                                       for a, need in zip(args, ctx.needs_input_grad))
            result.requires_grad = True
            result.grad_fn = ctx
        else:
            ctx.release()                # no graph: nothing will read what forward saved
        if extra:
            result = (result,) + tuple(Tensor(e) for e in extra)
        for observer in _observers:
            observer.op_finished(ctx, "forward", args, result)
        return result


class AccumulateGrad:
    """The node of a leaf tensor: it adds the gradient that reaches it into ``leaf.grad``."""

    name = "AccumulateGrad"
    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    @property
    def output_shape(self):
        return self.variable.shape

    def __repr__(self):
        return f"<AccumulateGrad node of a leaf of shape {self.output_shape}>"

    def accumulate(self, grad):
        leaf = self.variable
        grad = _run_hooks(leaf._hooks, grad)
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad


def topological_order(root):
    """Every node reachable from ``root``, each before the nodes it sends gradients to (root first)."""
    finished, expanded = [], set()
    stack = [(root, False)]
    while stack:                      # an iterative depth-first search: deep graphs need no recursion
        node, children_done = stack.pop()
        if children_done:
            finished.append(node)     # after all its inputs: post-order
            continue
        if node in expanded:
            continue
        expanded.add(node)
        stack.append((node, True))
        for child in node.next_functions:
            if child is not None and child not in expanded:
                stack.append((child, False))
    return finished[::-1]


def backward(root_node, grad, retain_graph=False):
    """Send ``grad`` (the gradient of the output of ``root_node``) back through the graph.

    Nodes run in topological order, so a node used by several later ops has
    received every one of their contributions (added up) before it runs.
    """
    grads = {root_node: grad}
    for node in topological_order(root_node):
        grad = grads.pop(node, None)
        if grad is None:
            continue                  # no path from the root carries a gradient here
        if isinstance(node, AccumulateGrad):
            node.accumulate(grad)
            continue
        grad = _run_hooks(node._hooks, grad)
        retained = node._retained_output() if node._retained_output is not None else None
        if retained is not None:
            retained.grad = grad if retained.grad is None else retained.grad + grad
        if node._released:
            node.saved_tensors        # raises the "second time" error
        for observer in _observers:
            observer.op_started(node, "backward")
        input_grads = type(node).backward(node, grad)
        for observer in _observers:
            observer.op_finished(node, "backward", None, None)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.next_functions):
            raise RuntimeError(f"{node.name}.backward returned {len(input_grads)} gradients, but forward took "
                               f"{len(node.next_functions)} arguments (return None for those without one)")
        for i, (child, child_grad) in enumerate(zip(node.next_functions, input_grads)):
            if child is None or child_grad is None:
                continue
            if tuple(child_grad.shape) != tuple(child.output_shape):
                raise RuntimeError(f"{node.name}.backward returned a gradient of shape {tuple(child_grad.shape)} "
                                   f"for argument {i}, whose shape is {tuple(child.output_shape)}")
            grads[child] = child_grad if child not in grads else grads[child] + child_grad
        if not retain_graph:
            node.release()

