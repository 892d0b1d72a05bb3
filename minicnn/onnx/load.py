"""mc.onnx.load: an ONNX model as a minicnn Module that computes the same function.

Each ONNX node becomes a call of a minicnn op (F.conv2d, F.max_pool2d, ...), so
the imported network runs on minicnn's kernels, records minicnn's autograd graph,
and can be fine-tuned. Initializers become parameters named as in the file
("conv1.weight", "features.0.weight"); BatchNormalization's mean and variance
become buffers, integer initializers (shapes) plain constants.

Everything is checked when the file loads, never at the first forward:

1. the graph is valid (InvalidOnnxModel): nodes in topological order, every input
   produced by an earlier node, an initializer or a graph input, every graph output
   produced, every required attribute present, no negative dimension, then
   onnx.checker for the rest;
2. minicnn can run it (UnsupportedOnnxModel): every op is one of RUNNERS, with
   attributes and types minicnn has (Cast to float32 or float64 only; 1-D and 2-D
   pooling without dilation; ...); every node minicnn cannot run is listed at once.

Each refusal names the node (by its name, or by its first output when it has none)
and the reason. ONNX's defaults apply where an attribute is absent (Transpose
reverses the axes, Clip without bounds is the identity, pooling strides are 1).
tests/test_onnx_backend.py runs ONNX's own backend node tests through this loader.
"""

import numpy as np

from .. import functional as F
from ..nn import Module
from ..tensor import Parameter, Tensor


class OnnxImportError(Exception):
    """Base of the errors mc.onnx.load raises for a model it refuses."""


class InvalidOnnxModel(OnnxImportError, ValueError):
    """The file is not a valid ONNX graph (out of order, an input nothing produces, ...)."""


class UnsupportedOnnxModel(OnnxImportError, NotImplementedError):
    """A valid graph that uses an op, attribute or type minicnn cannot run."""


class OnnxModule(Module):
    """A Module that runs an ONNX graph node by node with minicnn ops."""

    def __init__(self, graph, nodes, constants, input_name, output_name, input_dtype=np.float32):
        super().__init__()
        self.graph_name = graph
        self.nodes = nodes                  # [(op_type, name, inputs, outputs, attributes)], in order
        self.constants = constants          # name -> NumPy array (shapes, axes, Constant nodes)
        self.input_name, self.output_name = input_name, output_name
        self.input_dtype = np.dtype(input_dtype)
        self.tensors = {}                   # initializer name -> its Parameter or buffer
        self.submodules = {}                # dotted prefix of initializer names -> the Module holding them

    def add_initializer(self, name, array, buffer=False):
        """Register under nested modules following the dots: "conv1.weight" -> self.conv1.weight.
        A part of the name that is taken by an attribute of the module ("forward", "eval",
        "state_dict", "nodes", ...) gets a trailing underscore, as often as needed: state_dict
        then says "forward_", and the graph still finds the tensor under its own name."""
        *path, leaf = name.split(".")
        owner = self
        for depth in range(len(path)):
            prefix = ".".join(path[:depth + 1])
            if prefix not in self.submodules:      # by the file's name: "forward" may live as "forward_"
                part = _free_attribute(owner, path[depth])
                setattr(owner, part, Module())
                self.submodules[prefix] = owner._modules[part]
            owner = self.submodules[prefix]
        leaf = _free_attribute(owner, leaf)
        if buffer:
            owner.register_buffer(leaf, array)
            self.tensors[name] = owner._buffers[leaf]
        else:
            setattr(owner, leaf, Parameter(array))
            self.tensors[name] = owner._parameters[leaf]

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, self.input_dtype))
        values = {self.input_name: x}
        values.update(self.tensors)
        for op_type, name, inputs, outputs, attributes in self.nodes:
            args = [None if i == "" else (values[i] if i in values else self.constants[i]) for i in inputs]
            values[outputs[0]] = RUNNERS[op_type](args, attributes)
        return values[self.output_name]


def _free_attribute(owner, name):
    """``name``, or ``name_`` (``name__`` ...) when the module already has an attribute of that name."""
    while hasattr(owner, name) or name == "":
        name += "_"
    return name


# --------------------------------------------------------------------------- ONNX node -> minicnn op
def _padding(a, spatial, kernel, strides, dilations=(1, 1)):
    """ONNX's explicit pads [top, left, bottom, right], or its auto_pad, as minicnn's padding:
    (top, bottom, left, right), or a (ph, pw) pair when symmetric. spatial: the input's (H, W)."""
    auto_pad = _text(a.get("auto_pad", "NOTSET"))
    if auto_pad == "VALID":
        return (0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX's rule: output = ceil(input / stride), the padding it takes split in two;
        # the odd pixel goes to the end (SAME_UPPER, PyTorch's "same") or to the start
        sides = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            sides += [small, big] if auto_pad == "SAME_UPPER" else [big, small]
        top, bottom, left, right = sides
    else:
        top, left, bottom, right = a.get("pads") or (0, 0, 0, 0)
    if top == bottom and left == right:
        return (top, left)
    return (top, bottom, left, right)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _array(value):
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _tensor(value, like=None):
    """A Tensor of ``value`` (a constant array), in the dtype of ``like`` when given."""
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if like is not None else (np.float32 if np.asarray(value).dtype.kind != "f" else None)
    return Tensor(np.asarray(value, dtype=dtype))


def _as_2d(x, a, names=("kernel_shape", "strides", "dilations")):
    """A 1-D node (N, C, L) as a one-row 2-D one (N, C, 1, L): its attributes get a leading 1
    (pads [b, e] become [0, b, 0, e])."""
    if x.ndim != 3:
        return x, a
    a = dict(a)
    for key in names:
        if key in a:
            a[key] = [1] + list(a[key])
    if "pads" in a:
        a["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
    return x.reshape(x.shape[:2] + (1,) + x.shape[2:]), a


def _back_to_1d(y, was_1d):
    return y.reshape(y.shape[:2] + y.shape[3:]) if was_1d else y


def _conv(args, a):
    x, w = _tensor(args[0]), _tensor(args[1])
    bias = args[2] if len(args) > 2 else None
    was_1d = x.ndim == 3
    x, a = _as_2d(x, a)
    if was_1d:
        w = w.reshape(w.shape[:2] + (1,) + w.shape[2:])
    strides, dilations = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    y = F.conv2d(x, w, bias, stride=strides, padding=_padding(a, x.shape[2:], w.shape[2:], strides, dilations),
                 groups=a.get("group", 1), dilation=dilations)
    return _back_to_1d(y, was_1d)


def _gemm(args, a):
    x, w = _tensor(args[0]), _tensor(args[1])
    bias = args[2] if len(args) > 2 else None
    if a.get("transA", 0):
        x = x.T
    if not a.get("transB", 0):
        w = w.T                                       # minicnn's linear takes (out, in)
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1.0:
        x = x * alpha
    if bias is not None:
        bias = _tensor(bias, x)
        if beta != 1.0:
            bias = bias * beta
    if bias is not None and bias.ndim == 1 and bias.shape[0] == w.shape[0]:
        return F.linear(x, w, bias)
    y = F.linear(x, w)
    return y if bias is None else y + bias


def _pool(op):
    def run(args, a):
        x = _tensor(args[0])
        was_1d = x.ndim == 3
        x, a = _as_2d(x, a)
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", (1, 1)))                  # ONNX's default stride is 1, not the kernel
        kwargs = {"ceil_mode": bool(a.get("ceil_mode", 0))}
        if op is F.avg_pool2d:
            kwargs["count_include_pad"] = bool(a.get("count_include_pad", 0))    # ONNX's default is 0
        return _back_to_1d(op(x, kernel, strides, _padding(a, x.shape[2:], kernel, strides), **kwargs), was_1d)
    return run


def _lrn(args, a):
    # ONNX divides alpha by size: that is minicnn's divide_alpha_by_size=True
    return F.local_response_norm(_tensor(args[0]), a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75),
                                 a.get("bias", 1.0), divide_alpha_by_size=True)


def _flatten(args, a):
    x = _tensor(args[0])
    axis = a.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape((int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))


def _reshape(args, a):
    x, shape = _tensor(args[0]), [int(s) for s in _array(args[1])]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]    # 0 copies the input's dimension
    return x.reshape(tuple(shape))


def _batch_norm(args, a):
    x, scale, bias, mean, var = args
    return F.batch_norm(_tensor(x), mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _reduce_axes(args, a, ndim):
    """A Reduce node's axes: the attribute (before opset 18) or the second input; None for all."""
    axes = a.get("axes")
    if axes is None and len(args) > 1 and args[1] is not None:
        axes = [int(v) for v in _array(args[1]).reshape(-1)]
    if not axes:
        return None
    return tuple(sorted(int(v) % ndim for v in axes))


def _reduce_mean(args, a):
    x = _tensor(args[0])
    axes = _reduce_axes(args, a, x.ndim)
    if axes is None and a.get("noop_with_empty_axes", 0):
        return x
    return x.mean(axis=axes, keepdims=bool(a.get("keepdims", 1)))


def _global_pool(reduce):
    def run(args, a):
        x = _tensor(args[0])
        spatial = x.shape[2:]
        y = getattr(x.reshape(x.shape[:2] + (-1,)), reduce)(axis=2, keepdims=True)
        return y.reshape(x.shape[:2] + (1,) * len(spatial))
    return run


def _binary(method):
    def run(args, a):
        left, right = args
        if not isinstance(left, Tensor):
            left = _tensor(left, right if isinstance(right, Tensor) else None)
        return getattr(left, method)(_tensor(right, left))
    return run


def _variadic(args, a, mean=False):
    """Sum and Mean: element-wise over any number of inputs, broadcast as Add broadcasts."""
    tensors = [_tensor(v) for v in args]
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total * (1.0 / len(tensors)) if mean else total


def _clip(args, a):
    low = float(_array(args[1])) if len(args) > 1 and args[1] is not None else a.get("min")
    high = float(_array(args[2])) if len(args) > 2 and args[2] is not None else a.get("max")
    x = _tensor(args[0])
    return x if low is None and high is None else x.clamp(low, high)   # ONNX: no bound, no clipping


def _unsqueeze(args, a):
    x = _tensor(args[0])
    axes = a.get("axes") or [int(v) for v in _array(args[1]).reshape(-1)]
    for axis in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
        x = x.unsqueeze(axis)
    return x


def _transpose(args, a):
    x = _tensor(args[0])
    return x.transpose(tuple(a["perm"]) if "perm" in a else tuple(reversed(range(x.ndim))))   # ONNX: reverse


def _softmax(op):
    def run(args, a):
        x = _tensor(args[0])
        if not a["as_2d"]:
            return op(x, a["axis"])
        # before opset 13: the input is seen as 2-D, (dims before axis) x (dims from axis on)
        axis = a["axis"] + x.ndim if a["axis"] < 0 else a["axis"]
        flat = x.reshape((int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))
        return op(flat, 1).reshape(x.shape)
    return run


CAST_TARGETS = {1: np.float32, 11: np.float64}     # TensorProto.FLOAT, TensorProto.DOUBLE


def _concat(args, a):
    from ..ops.tensor_ops import cat
    return cat([_tensor(v) for v in args], axis=a["axis"])


RUNNERS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _binary("__matmul__"),
    "MaxPool": _pool(F.max_pool2d), "AveragePool": _pool(F.avg_pool2d),
    "GlobalAveragePool": _global_pool("mean"), "GlobalMaxPool": _global_pool("max"),
    "LRN": _lrn, "Relu": lambda args, a: F.relu(_tensor(args[0])),
    "LeakyRelu": lambda args, a: F.leaky_relu(_tensor(args[0]), a.get("alpha", 0.01)),
    "Sigmoid": lambda args, a: F.sigmoid(_tensor(args[0])), "Tanh": lambda args, a: F.tanh(_tensor(args[0])),
    "Softmax": _softmax(F.softmax), "LogSoftmax": _softmax(F.log_softmax),    # axis, as_2d: set by load()
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose,
    "BatchNormalization": _batch_norm, "ReduceMean": _reduce_mean,
    "Add": _binary("__add__"), "Sub": _binary("__sub__"), "Mul": _binary("__mul__"), "Div": _binary("__truediv__"),
    "Sum": _variadic, "Mean": lambda args, a: _variadic(args, a, mean=True),
    "Neg": lambda args, a: -_tensor(args[0]), "Exp": lambda args, a: _tensor(args[0]).exp(),
    "Log": lambda args, a: _tensor(args[0]).log(), "Sqrt": lambda args, a: _tensor(args[0]).sqrt(),
    "Abs": lambda args, a: _tensor(args[0]).abs(),
    "Pow": lambda args, a: _tensor(args[0]) ** float(_array(args[1])), "Clip": _clip,
    "Concat": _concat, "Unsqueeze": _unsqueeze,
    "Identity": lambda args, a: args[0], "Dropout": lambda args, a: args[0],
    "Cast": lambda args, a: _tensor(args[0]).astype(CAST_TARGETS[a["to"]]),
}


# --------------------------------------------------------------------------- checks at load
def _label(node):
    """How an error names a node: its name, or its first output when it has none."""
    return f"node {node.name!r}" if node.name else f"the node producing {node.output[0]!r}" if node.output else \
        "an unnamed node"


def _validate(proto, opset):
    """The graph is well formed, or InvalidOnnxModel names the first node (or name) that is not."""
    import onnx

    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    for tensor in graph.initializer:
        if any(d < 0 for d in tensor.dims):
            raise InvalidOnnxModel(f"mc.onnx.load: initializer {tensor.name!r} has negative dimensions "
                                   f"{list(tensor.dims)}")
    for value in list(graph.input) + list(graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value")]
            if any(d < 0 for d in dims):
                kind = "input" if value in graph.input else "output"
                raise InvalidOnnxModel(f"mc.onnx.load: graph {kind} {value.name!r} declares negative dimensions "
                                       f"{dims}")
    available = initializers | {i.name for i in graph.input}
    producer = {}
    for node in graph.node:
        for name in node.output:
            producer.setdefault(name, node)
    for node in graph.node:
        for name in node.input:
            if name == "" or name in available:
                continue
            if name in producer:
                raise InvalidOnnxModel(
                    f"mc.onnx.load: {node.op_type} ({_label(node)}) reads {name!r} before {_label(producer[name])} "
                    f"produces it: the nodes are not in topological order" + (
                        ", and cannot be: they form a cycle" if _has_cycle(graph) else ""))
            raise InvalidOnnxModel(f"mc.onnx.load: {node.op_type} ({_label(node)}) reads {name!r}, which no node, "
                                   f"initializer or graph input produces")
        for name in node.output:
            if name and name in available:
                raise InvalidOnnxModel(f"mc.onnx.load: {node.op_type} ({_label(node)}) produces {name!r}, which "
                                       f"exists already (ONNX names each value once)")
            available.add(name)
        _check_attributes(node, opset)
    for output in graph.output:
        if output.name not in available:
            raise InvalidOnnxModel(f"mc.onnx.load: graph output {output.name!r} is produced by no node, initializer "
                                   f"or graph input")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise InvalidOnnxModel(f"mc.onnx.load: onnx.checker refuses the model: {str(e).strip()}") from e


def _has_cycle(graph):
    """Whether no order of the nodes lets each read only what is produced before it (Kahn)."""
    ready = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending = list(graph.node)
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            return any(i in {o for n in pending for o in n.output} for n in pending for i in n.input)
        ready.update(o for n in runnable for o in n.output)
        pending = [n for n in pending if n not in runnable]
    return False


def _check_attributes(node, opset):
    """Every attribute the op's schema requires is present (before onnx.checker, to name the node)."""
    import onnx

    if node.domain not in ("", "ai.onnx"):
        return
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return                                  # unknown ops are refused as unsupported, by name
    given = {a.name for a in node.attribute}
    missing = [name for name, attribute in schema.attributes.items() if attribute.required and name not in given]
    if missing:
        raise InvalidOnnxModel(f"mc.onnx.load: {node.op_type} ({_label(node)}) lacks its required attribute"
                               f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")


def _unsupported_reason(node, a, constants, used):
    """Why minicnn cannot run ``node`` (None when it can): the ops, attributes and types it lacks."""
    from onnx import TensorProto

    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in RUNNERS and op != "Constant":
        return f"unsupported op {op}" + (f" (domain {node.domain})" if node.domain else "")
    extra = [o for o in node.output[1:] if o and o in used]
    if extra:
        return f"its outputs beyond the first ({', '.join(map(repr, extra))}) are used; minicnn computes only the first"
    if op == "Cast" and a["to"] not in CAST_TARGETS:
        return f"it casts to {TensorProto.DataType.Name(a['to'])} (to={a['to']}); minicnn computes in FLOAT " \
               f"(float32) and DOUBLE (float64) only"
    if op in ("MaxPool", "AveragePool"):
        rank = len(a["kernel_shape"])
        if rank not in (1, 2):
            return f"{rank}-D pooling (kernel_shape {list(a['kernel_shape'])}): minicnn pools 1-D and 2-D inputs"
        if any(d != 1 for d in a.get("dilations", ())):
            return f"pooling with dilations {tuple(a['dilations'])}: minicnn's pooling has no dilation"
        if op == "MaxPool" and a.get("storage_order", 0):
            return "MaxPool with storage_order=1 (column-major indices)"
    if op == "Conv" and "kernel_shape" in a and len(a["kernel_shape"]) not in (1, 2):
        return f"{len(a['kernel_shape'])}-D convolution (kernel_shape {list(a['kernel_shape'])}): minicnn convolves " \
               f"1-D and 2-D inputs"
    if op == "BatchNormalization" and a.get("training_mode", 0):
        return "BatchNormalization with training_mode=1 (minicnn imports the inference form)"
    if op in ("Reshape", "Pow", "Clip", "Unsqueeze", "ReduceMean"):
        for position in {"Reshape": (1,), "Pow": (1,), "Clip": (1, 2), "Unsqueeze": (1,), "ReduceMean": (1,)}[op]:
            if len(node.input) > position and node.input[position] and node.input[position] not in constants:
                return f"{op} whose input {position} ({node.input[position]!r}) is computed: minicnn needs it " \
                       f"constant (an initializer or a Constant node)"
    if op == "Reshape":
        shape = [int(s) for s in constants[node.input[1]].reshape(-1)]
        if any(s < -1 for s in shape) or shape.count(-1) > 1:
            return f"Reshape to {shape}: negative sizes other than a single -1 are not shapes"
    if op == "Pow" and constants[node.input[1]].size != 1:
        return "Pow with an exponent that is not one number"
    if op == "Dropout" and len(node.input) > 2 and node.input[2] and \
            node.input[2] in constants and bool(constants[node.input[2]]):
        return "Dropout with training_mode=True"
    return None


def _constant_value(node, a):
    """The array a Constant node holds, or None for kinds minicnn has no use for (strings, sparse)."""
    from onnx import numpy_helper

    if "value" in a:
        return numpy_helper.to_array(a["value"])
    kinds = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    for key, dtype in kinds.items():
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    return None


# Element types every value of which a float64 holds exactly: a graph input of one of these
# types loads when only Casts to FLOAT or DOUBLE read it (an image as uint8, then Cast).
EXACT_IN_FLOAT64 = ("BOOL", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT16", "BFLOAT16",
                    "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0",
                    "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2")


def _input_dtype(value, graph):
    """(NumPy dtype the input is converted to, None), or (None, why minicnn cannot take it)."""
    from onnx import TensorProto

    if not value.type.HasField("tensor_type"):
        return None, f"graph input {value.name!r} is a {value.type.WhichOneof('value')}, not a tensor"
    kind = value.type.tensor_type.elem_type
    if kind == TensorProto.FLOAT:
        return np.float32, None
    if kind == TensorProto.DOUBLE:
        return np.float64, None
    name = TensorProto.DataType.Name(kind)
    readers = [n for n in graph.node if value.name in n.input]
    only_cast = readers and all(n.op_type == "Cast" and any(a.name == "to" and a.i in CAST_TARGETS
                                                            for a in n.attribute) for n in readers)
    if name in EXACT_IN_FLOAT64 and only_cast and value.name not in {o.name for o in graph.output}:
        return np.float64, None     # exact; each Cast then rounds to its target as ONNX's Cast does
    return None, (f"graph input {value.name!r} is {name}: minicnn computes on FLOAT (float32) and DOUBLE "
                  f"(float64) tensors (other number types load only when Casts to those are all that read them)")


def load(path_or_proto):
    """Load an ONNX file (or ModelProto) as an OnnxModule.

    Raises InvalidOnnxModel (a ValueError) for a broken graph and UnsupportedOnnxModel (a
    NotImplementedError) listing every node minicnn cannot run; each names the node."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path_or_proto)) if not isinstance(path_or_proto, onnx.ModelProto) else path_or_proto
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    _validate(proto, opset)
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    from .export import CONSTANT_DOC
    marked_constant = {t.name for t in graph.initializer if t.doc_string == CONSTANT_DOC}
    constants = {name: array for name, array in initializers.items()
                 if array.dtype.kind != "f" or name in marked_constant}
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    nodes, refused = [], []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        reason = _unsupported_reason(node, attributes, constants, used)
        if reason is None and node.op_type == "Constant":
            value = _constant_value(node, attributes)
            if value is None:
                reason = f"Constant of kind {sorted(attributes)} (minicnn holds numbers only)"
            else:
                constants[node.output[0]] = value
                continue
        if reason is not None:
            refused.append(f"{reason} in {_label(node)}" if reason.startswith("unsupported op") else
                           f"{node.op_type} ({_label(node)}): {reason}")
            continue
        if node.op_type in ("Softmax", "LogSoftmax"):      # opset 13 changed the default axis and the meaning
            attributes = dict(attributes, axis=attributes.get("axis", -1 if opset >= 13 else 1), as_2d=opset < 13)
        nodes.append((node.op_type, node.name, list(node.input), list(node.output), attributes))
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        refused.append(f"graphs with one input and one output load; this one has inputs {[i.name for i in inputs]} "
                       f"and outputs {[o.name for o in graph.output]}")
    else:
        input_dtype, reason = _input_dtype(inputs[0], graph)
        if reason:
            refused.append(reason)
    if refused:
        raise UnsupportedOnnxModel(f"mc.onnx.load: minicnn cannot run graph {graph.name!r}: " + "; ".join(refused))
    module = OnnxModule(graph.name, nodes, constants, inputs[0].name, graph.output[0].name, input_dtype)
    statistics = {n[2][3] for n in nodes if n[0] == "BatchNormalization"} | \
        {n[2][4] for n in nodes if n[0] == "BatchNormalization"}
    for name, array in initializers.items():
        if name not in constants:
            dtype = np.float64 if array.dtype == np.float64 else np.float32
            module.add_initializer(name, array.astype(dtype), buffer=name in statistics)
    return module
