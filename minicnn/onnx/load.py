"""mc.onnx.load: an ONNX model as a minicnn Module that computes the same function.

Each ONNX node becomes a call of a minicnn op (F.conv2d, F.max_pool2d, ...), so
the imported network runs on minicnn's kernels, records minicnn's autograd graph,
and can be fine-tuned. Initializers become parameters named as in the file
("conv1.weight", "features.0.weight"); BatchNormalization's mean and variance
become buffers, integer initializers (shapes) plain constants.

Graphs made of the ops minicnn has load (PyTorch's and Keras's exporters write
them); every node minicnn cannot run is listed, with its name, in one error.
"""

import numpy as np

from .. import functional as F
from ..nn import Module
from ..tensor import Parameter, Tensor


class OnnxModule(Module):
    """A Module that runs an ONNX graph node by node with minicnn ops."""

    def __init__(self, graph, nodes, constants, input_name, output_name):
        super().__init__()
        self.graph_name = graph
        self.nodes = nodes                  # [(op_type, name, inputs, outputs, attributes)], in order
        self.constants = constants          # name -> NumPy array (shapes, axes, Constant nodes)
        self.input_name, self.output_name = input_name, output_name
        self.tensors = {}                   # initializer name -> its Parameter or buffer

    def add_initializer(self, name, array, buffer=False):
        """Register under nested modules following the dots: "conv1.weight" -> self.conv1.weight."""
        *path, leaf = name.split(".")
        owner = self
        for part in path:
            if part not in owner._modules:
                setattr(owner, part, Module())
            owner = owner._modules[part]
        if buffer:
            owner.register_buffer(leaf, array)
            self.tensors[name] = owner._buffers[leaf]
        else:
            setattr(owner, leaf, Parameter(array))
            self.tensors[name] = owner._parameters[leaf]

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, np.float32))
        values = {self.input_name: x}
        values.update(self.tensors)
        for op_type, name, inputs, outputs, attributes in self.nodes:
            args = [None if i == "" else (values[i] if i in values else self.constants[i]) for i in inputs]
            result = RUNNERS[op_type](args, attributes)
            values[outputs[0]] = result
        return values[self.output_name]


# --------------------------------------------------------------------------- ONNX node -> minicnn op
def _padding(a, x, kernel, strides, dilations=(1, 1)):
    """ONNX's explicit pads [top, left, bottom, right], or its auto_pad, as minicnn's padding:
    (top, bottom, left, right), or a (ph, pw) pair when symmetric."""
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad == "VALID":
        return (0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX's rule: output = ceil(input / stride), the padding it takes split in two;
        # the odd pixel goes to the end (SAME_UPPER, PyTorch's "same") or to the start
        sides = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            sides += [small, big] if auto_pad == "SAME_UPPER" else [big, small]
        top, bottom, left, right = sides
    elif auto_pad == "NOTSET":
        pads = a.get("pads") or (0, 0, 0, 0)
        top, left, bottom, right = pads
    else:
        raise ValueError(f"mc.onnx.load: unknown auto_pad {auto_pad!r} (NOTSET, SAME_UPPER, SAME_LOWER or VALID)")
    if top == bottom and left == right:
        return (top, left)
    return (top, bottom, left, right)


def _array(value):
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _conv(args, a):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    strides, dilations = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    return F.conv2d(x, w, bias, stride=strides, padding=_padding(a, x, w.shape[2:], strides, dilations),
                    groups=a.get("group", 1), dilation=dilations)


def _gemm(args, a):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    if a.get("transA", 0):
        x = x.T
    if not a.get("transB", 0):
        w = w.T                                       # minicnn's linear takes (out, in)
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1.0:
        x = x * alpha
    if bias is not None and beta != 1.0:
        bias = bias * beta
    if bias is not None and isinstance(bias, Tensor) and bias.ndim == 1:
        return F.linear(x, w, bias)
    y = F.linear(x, w)
    return y if bias is None else y + bias


def _pool(op):
    def run(args, a):
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", (1, 1)))                  # ONNX's default stride is 1, not the kernel
        if tuple(a.get("dilations", (1, 1))) != (1, 1):
            raise NotImplementedError(f"mc.onnx.load: pooling with dilations {tuple(a['dilations'])}: minicnn's "
                                      "pooling has no dilation")
        kwargs = {"ceil_mode": bool(a.get("ceil_mode", 0))}
        if op is F.avg_pool2d:
            kwargs["count_include_pad"] = bool(a.get("count_include_pad", 0))    # ONNX's default is 0
        return op(args[0], kernel, strides, _padding(a, args[0], kernel, strides), **kwargs)
    return run


def _lrn(args, a):
    # ONNX divides alpha by size: that is minicnn's divide_alpha_by_size=True
    return F.local_response_norm(args[0], a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0),
                                 divide_alpha_by_size=True)


def _flatten(args, a):
    x = args[0]
    axis = a.get("axis", 1) % max(x.ndim, 1)
    return x.reshape((int(np.prod(x.shape[:axis])), -1) if axis else (1, -1))


def _reshape(args, a):
    x, shape = args[0], [int(s) for s in _array(args[1])]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]    # 0 copies the input's dimension
    return x.reshape(tuple(shape))


def _batch_norm(args, a):
    x, scale, bias, mean, var = args
    from ..functional import batch_norm
    return batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _reduce_mean(args, a):
    x = args[0]
    axes = a.get("axes") or ([int(v) for v in _array(args[1])] if len(args) > 1 and args[1] is not None else None)
    return x.mean(axis=tuple(axes) if axes is not None else None, keepdims=bool(a.get("keepdims", 1)))


def _global_average_pool(args, a):
    return args[0].mean(axis=(2, 3), keepdims=True)


def _constant_operand(value, like):
    return value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=like.dtype))


def _binary(method):
    def run(args, a):
        left, right = args
        if not isinstance(left, Tensor):
            left = _constant_operand(left, right)
        return getattr(left, method)(_constant_operand(right, left))
    return run


def _clip(args, a):
    low = float(_array(args[1])) if len(args) > 1 and args[1] is not None else a.get("min")
    high = float(_array(args[2])) if len(args) > 2 and args[2] is not None else a.get("max")
    return args[0].clamp(low, high)


def _unsqueeze(args, a):
    x = args[0]
    axes = a.get("axes") or [int(v) for v in _array(args[1])]
    for axis in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
        x = x.unsqueeze(axis)
    return x


RUNNERS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _binary("__matmul__"),
    "MaxPool": _pool(F.max_pool2d), "AveragePool": _pool(F.avg_pool2d), "GlobalAveragePool": _global_average_pool,
    "LRN": _lrn, "Relu": lambda args, a: F.relu(args[0]),
    "LeakyRelu": lambda args, a: F.leaky_relu(args[0], a.get("alpha", 0.01)),
    "Sigmoid": lambda args, a: F.sigmoid(args[0]), "Tanh": lambda args, a: F.tanh(args[0]),
    "Softmax": lambda args, a: F.softmax(args[0], a.get("axis", -1)),
    "LogSoftmax": lambda args, a: F.log_softmax(args[0], a.get("axis", -1)),
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": lambda args, a: args[0].transpose(tuple(a["perm"])),
    "BatchNormalization": _batch_norm, "ReduceMean": _reduce_mean,
    "Add": _binary("__add__"), "Sub": _binary("__sub__"), "Mul": _binary("__mul__"), "Div": _binary("__truediv__"),
    "Neg": lambda args, a: -args[0], "Exp": lambda args, a: args[0].exp(), "Log": lambda args, a: args[0].log(),
    "Sqrt": lambda args, a: args[0].sqrt(), "Abs": lambda args, a: args[0].abs(),
    "Pow": lambda args, a: args[0] ** float(_array(args[1])), "Clip": _clip,
    "Concat": lambda args, a: _concat(args, a), "Unsqueeze": _unsqueeze,
    "Identity": lambda args, a: args[0], "Dropout": lambda args, a: args[0],
    "Cast": lambda args, a: args[0],
}


def _concat(args, a):
    from ..ops.tensor_ops import cat
    return cat(args, axis=a["axis"])


def load(path_or_proto):
    """Load an ONNX file (or ModelProto) as an OnnxModule; raises NotImplementedError listing every
    node whose op minicnn cannot run, with its name."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path_or_proto)) if not isinstance(path_or_proto, onnx.ModelProto) else path_or_proto
    graph = proto.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    from .export import CONSTANT_DOC
    marked_constant = {t.name for t in graph.initializer if t.doc_string == CONSTANT_DOC}
    constants = {}
    nodes, unsupported = [], []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(attributes["value"])
            continue
        if node.op_type not in RUNNERS:
            unsupported.append(f"{node.op_type} (node {node.name or node.output[0]!r})")
            continue
        nodes.append((node.op_type, node.name, list(node.input), list(node.output), attributes))
    if unsupported:
        raise NotImplementedError("mc.onnx.load: minicnn cannot run these nodes: " + ", ".join(unsupported))
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise NotImplementedError(f"mc.onnx.load: graphs with one input and one output load; this one has inputs "
                                  f"{inputs} and outputs {[o.name for o in graph.output]}")
    module = OnnxModule(graph.name, nodes, constants, inputs[0], graph.output[0].name)
    statistics = {n[2][3] for n in nodes if n[0] == "BatchNormalization"} | \
        {n[2][4] for n in nodes if n[0] == "BatchNormalization"}
    for name, array in initializers.items():
        if array.dtype.kind == "f" and name not in marked_constant:
            module.add_initializer(name, array.astype(np.float32), buffer=name in statistics)
        else:
            constants[name] = array
    return module
