"""mc.onnx.export: a minicnn Module as an ONNX model.

The exporter runs one forward of the model in eval mode and watches every op run
(autograd.observe): each op becomes one or a few ONNX nodes, each parameter an
initializer named as in the state_dict ("conv1.weight"), and every other tensor
an op reads (a constant such as the 2.0 in ``x * 2.0``) an initializer of its own.
So any Module made of minicnn ops exports, whatever its forward does in Python.
Dropout is the identity in eval mode, so it leaves nothing to export.

The graph's input is "input" and its output "output", both with a symbolic
batch dimension "batch". Weights are written as float32.
"""

import numpy as np

from .. import autograd
from ..tensor import Tensor, no_grad

DEFAULT_OPSET = 18
CONSTANT_DOC = "minicnn: a constant, not a parameter"


class _Recorder:
    """Keeps every forward op with its arguments and output, in the order they ran."""

    def __init__(self):
        self.calls = []

    def op_started(self, node, phase):
        pass

    def op_finished(self, node, phase, inputs, output):
        if phase == "forward":
            self.calls.append((node, inputs, output))   # holding the tensors keeps their ids unique


class _GraphBuilder:
    """Names values, collects initializers and nodes, and converts each recorded op."""

    def __init__(self, model, example, batch):
        from onnx import helper
        self.helper = helper
        self.batch = batch
        self.names = {id(example): "input"}
        self.parameters = {id(p): name for name, p in model.named_parameters()}
        self.parameters.update({id(b): name for name, b in model.named_buffers()})
        self.layer_names = {id(m): name for name, m in model.named_modules() if name}
        self.initializers, self.nodes, self.counter = [], [], 0
        self.initialized = set()

    def fresh(self, stem):
        self.counter += 1
        return f"{stem}_{self.counter}"

    def constant(self, array, stem="const"):
        from onnx import numpy_helper
        name = self.fresh(stem)
        proto = numpy_helper.from_array(np.asarray(array), name)
        proto.doc_string = CONSTANT_DOC        # mc.onnx.load keeps these out of the parameters
        self.initializers.append(proto)
        return name

    def value(self, tensor):
        """The ONNX name of a tensor an op reads: an earlier output, the input, a parameter or a constant."""
        if id(tensor) in self.names:
            return self.names[id(tensor)]
        from onnx import numpy_helper
        name = self.parameters.get(id(tensor))
        data = tensor.numpy()
        if data.dtype.kind == "f":
            data = data.astype(np.float32)
        if name is None:
            return self.names.setdefault(id(tensor), self.constant(data))
        if name not in self.initialized:
            self.initialized.add(name)
            self.initializers.append(numpy_helper.from_array(data, name))
        self.names[id(tensor)] = name
        return name

    def node(self, op_type, inputs, output=None, **attributes):
        output = output or self.fresh(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), **attributes))
        return output

    def layer(self, node):
        name = self.layer_names.get(id(node.module)) if node.module is not None else None
        return f"layer '{name}' ({type(node.module).__name__})" if name else "the model's forward"

    def reshape_target(self, shape, node):
        """A traced output shape with its batch dimension made symbolic: the leading dimension (the batch,
        or the batch folded with others) becomes -1, which ONNX infers from the element count."""
        shape = list(shape)
        if shape and shape[0] % self.batch == 0:
            return [-1] + shape[1:]
        raise NotImplementedError(f"Reshape to {tuple(shape)} in {self.layer(node)}: the batch dimension "
                                  "is not in the leading dimension of the target shape")


def _pads(padding):
    """minicnn's padding (ph, pw) or (top, bottom, left, right) as ONNX's [top, left, bottom, right]."""
    if len(padding) == 2:
        return [padding[0], padding[1], padding[0], padding[1]]
    top, bottom, left, right = padding
    return [top, left, bottom, right]


# --------------------------------------------------------------------------- one converter per op
def _conv2d(b, node, args, out):
    x, weight, bias, stride, padding, groups = args[:6]
    dilation = args[6] if len(args) > 6 else (1, 1)
    inputs = [b.value(x), b.value(weight)] + ([b.value(bias)] if bias is not None else [])
    return b.node("Conv", inputs, kernel_shape=list(weight.shape[2:]), strides=list(stride), pads=_pads(padding),
                  group=int(groups), dilations=list(dilation))


def _linear(b, node, args, out):
    x, weight, bias = args
    inputs = [b.value(x), b.value(weight)] + ([b.value(bias)] if bias is not None else [])
    return b.node("Gemm", inputs, transB=1)


def _floor_pads(b, node, x, kernel, stride, padding, out, counted):
    """Pooling pads for ONNX with floor rounding that give minicnn's output size.

    ceil_mode in minicnn follows PyTorch, which drops a last window that would start in
    the end padding; ONNX's ceil_mode keeps it. So ceil_mode is exported as floor
    rounding with the end padding the kept windows need (ignored by max pooling, not
    counted by average pooling with count_include_pad=False)."""
    top, bottom, left, right = padding if len(padding) == 4 else (padding[0], padding[0], padding[1], padding[1])
    ends = []
    for size, k, s, begin, end, n_out in ((x.shape[2], kernel[0], stride[0], top, bottom, out.shape[2]),
                                          (x.shape[3], kernel[1], stride[1], left, right, out.shape[3])):
        needed = max(end, (n_out - 1) * s + k - size - begin)
        if needed > end and counted:
            raise NotImplementedError(f"AvgPool2d with ceil_mode and count_include_pad in {b.layer(node)}: ONNX "
                                      "would count the padding its last window needs")
        ends.append(needed)
    return [top, left, ends[0], ends[1]]


def _max_pool(b, node, args, out):
    x, kernel, stride, padding, ceil_mode, return_indices = args
    if return_indices:
        raise NotImplementedError(f"MaxPool2d with return_indices in {b.layer(node)}: ONNX's indices count "
                                  "across the whole tensor, minicnn's within each (N, C) plane")
    return b.node("MaxPool", [b.value(x)], kernel_shape=list(kernel), strides=list(stride),
                  pads=_floor_pads(b, node, x, kernel, stride, padding, out, counted=False))


def _avg_pool(b, node, args, out):
    x, kernel, stride, padding, ceil_mode, count_include_pad = args
    pads = _floor_pads(b, node, x, kernel, stride, padding, out, counted=count_include_pad)
    return b.node("AveragePool", [b.value(x)], kernel_shape=list(kernel), strides=list(stride),
                  pads=pads, count_include_pad=int(count_include_pad))


def _lrn(b, node, args, out):
    x, size = args[0], args[1]
    # ONNX divides its alpha by size (Caffe's convention); minicnn's coefficient is the alpha actually used
    return b.node("LRN", [b.value(x)], size=int(size), alpha=float(node.coefficient * size), beta=float(node.beta),
                  bias=float(node.k))


def _mean(b, node, args, out):
    x, axes, keepdims = args
    if x.ndim == 4 and tuple(axes) == (2, 3):
        pooled = b.node("GlobalAveragePool", [b.value(x)])
        if keepdims:
            return pooled
        return b.node("Flatten", [pooled], axis=1)
    return b.node("ReduceMean", [b.value(x), b.constant(np.array(axes, np.int64), "axes")], keepdims=int(keepdims))


def _sum(b, node, args, out):
    x, axes, keepdims = args
    return b.node("ReduceSum", [b.value(x), b.constant(np.array(axes, np.int64), "axes")], keepdims=int(keepdims))


def _reshape(b, node, args, out):
    x, shape = args
    if x.shape[0] == b.batch and out.shape == (b.batch, int(np.prod(x.shape[1:]))):
        return b.node("Flatten", [b.value(x)], axis=1)          # F.flatten: (N, ...) -> (N, rest)
    target = b.reshape_target(out.shape, node)
    return b.node("Reshape", [b.value(x), b.constant(np.array(target, np.int64), "shape")])


def _transpose(b, node, args, out):
    x, axes = args
    return b.node("Transpose", [b.value(x)], perm=[int(a) % x.ndim for a in axes])


def _unary(op_type, **attributes):
    return lambda b, node, args, out: b.node(op_type, [b.value(args[0])], **attributes)


def _binary(op_type):
    return lambda b, node, args, out: b.node(op_type, [b.value(args[0]), b.value(args[1])])


def _leaky_relu(b, node, args, out):
    return b.node("LeakyRelu", [b.value(args[0])], alpha=float(args[1]))


def _relu(b, node, args, out):
    return b.node("Relu", [b.value(args[0])])


def _softmax(op_type):
    return lambda b, node, args, out: b.node(op_type, [b.value(args[0])], axis=int(args[1]))


def _pow(b, node, args, out):
    return b.node("Pow", [b.value(args[0]), b.constant(np.array(args[1], np.float32), "exponent")])


def _clamp(b, node, args, out):
    x, low, high = args
    low_name = b.constant(np.array(low, np.float32), "min") if low is not None else ""
    high_name = b.constant(np.array(high, np.float32), "max") if high is not None else ""
    return b.node("Clip", [b.value(x), low_name, high_name])


def _concat(b, node, args, out):
    return b.node("Concat", [b.value(t) for t in args[1:]], axis=int(args[0]))


def _stack(b, node, args, out):
    axis = int(args[0])
    axes = b.constant(np.array([axis], np.int64), "axes")
    return b.node("Concat", [b.node("Unsqueeze", [b.value(t), axes]) for t in args[1:]], axis=axis)


def _identity(b, node, args, out):
    return b.node("Identity", [b.value(args[0])])


def _cast(b, node, args, out):
    from onnx import helper
    return b.node("Cast", [b.value(args[0])], to=helper.np_dtype_to_tensor_dtype(np.dtype(np.float32)))


def _batch_norm(b, node, args, out):
    """Eval-mode BatchNorm (running statistics) as BatchNormalization."""
    x, running_mean, running_var, weight, bias, training, momentum, eps = args
    if training:
        raise NotImplementedError(f"BatchNorm with batch statistics in {b.layer(node)}: export normalises with "
                                  "the running statistics (eval mode)")
    channels = x.shape[1]
    scale = b.value(weight) if weight is not None else b.constant(np.ones(channels, np.float32), "scale")
    shift = b.value(bias) if bias is not None else b.constant(np.zeros(channels, np.float32), "bias")
    return b.node("BatchNormalization", [b.value(x), scale, shift, b.value(running_mean), b.value(running_var)],
                  epsilon=float(eps))


CONVERTERS = {
    "Conv2d": _conv2d, "Linear": _linear, "MaxPool2d": _max_pool, "AvgPool2d": _avg_pool,
    "LocalResponseNorm": _lrn, "Mean": _mean, "Sum": _sum, "Reshape": _reshape, "Transpose": _transpose,
    "ReLU": _relu, "LeakyReLU": _leaky_relu, "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("LogSoftmax"),
    "Add": _binary("Add"), "Sub": _binary("Sub"), "Mul": _binary("Mul"), "Div": _binary("Div"),
    "MatMul": _binary("MatMul"), "Neg": _unary("Neg"), "Exp": _unary("Exp"), "Log": _unary("Log"),
    "Sqrt": _unary("Sqrt"), "Abs": _unary("Abs"), "Pow": _pow, "Clamp": _clamp, "Cat": _concat, "Stack": _stack,
    "ToDevice": _identity, "AsType": _cast, "BatchNorm": _batch_norm,
}


def to_onnx(model, example_input, opset=DEFAULT_OPSET):
    """The ONNX ModelProto of ``model`` traced on ``example_input`` (an (N, C, H, W) array or Tensor)."""
    import onnx
    from onnx import TensorProto, helper

    from ..nn import Module
    if not isinstance(model, Module):
        raise TypeError(f"onnx export: model must be a minicnn Module, got {type(model).__name__}")
    example = example_input if isinstance(example_input, Tensor) else Tensor(np.asarray(example_input, np.float32))
    example = Tensor(example.data.astype(np.float32)).to(model.device) if example.dtype != np.float32 else example
    if example.ndim < 1:
        raise ValueError("onnx export: the example input needs a batch dimension")
    was_training = model.training
    model.eval()
    recorder = _Recorder()
    try:
        with no_grad(), autograd.observe(recorder):
            output = model(example)
    finally:
        model.train(was_training)
    if not isinstance(output, Tensor):
        raise TypeError(f"onnx export: the model's forward must return one Tensor, got {type(output).__name__}")
    builder = _GraphBuilder(model, example, batch=example.shape[0])
    unsupported = []
    for node, args, out in recorder.calls:
        converter = CONVERTERS.get(node.name)
        if converter is None:
            unsupported.append(f"{node.name} in {builder.layer(node)}")
            continue
        try:
            builder.names[id(out)] = converter(builder, node, args, out)
        except NotImplementedError as e:
            unsupported.append(str(e))
    if unsupported:
        raise NotImplementedError("onnx export: no ONNX mapping for " + "; ".join(unsupported))
    if id(output) not in builder.names:
        raise ValueError("onnx export: the model's output is not computed by any op (it returns its input?)")
    # the last node writes "output" directly
    final = builder.names[id(output)]
    if final == "input":
        raise ValueError("onnx export: the model returns its input unchanged")
    builder.nodes.append(helper.make_node("Identity", [final], ["output"], name="output_identity"))
    batch_shape = ["batch"] + list(example.shape[1:])
    out_shape = ["batch"] + list(output.shape[1:])
    graph = helper.make_graph(
        builder.nodes, type(model).__name__,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, batch_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=builder.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name="minicnn")
    proto.ir_version = min(proto.ir_version, 10)    # what current ONNX Runtime releases read
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, example_input, path, opset=DEFAULT_OPSET):
    """Write ``model`` as an ONNX file (see the module docstring); returns the ModelProto."""
    import onnx
    from ..files import atomic_write
    proto = to_onnx(model, example_input, opset=opset)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto
