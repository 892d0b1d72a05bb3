"""mc.explore(model, image, "page.html"): one HTML page that opens a network on one image.

    mc.explore(model, image, "page.html")                 # image: the model's input, (C, H, W)
    python -m minicnn explore runs/<timestamp>/checkpoint.npz --image digit.png --out page.html

The page is one file with its data and its script inside: it needs no server and no network,
and opens from file:// in any browser. It shows

- the network as a row of columns, one per op the forward ran (in the order it ran), each with
  its output as pictures (every channel of a feature map; a vector as a strip), its shape, its
  parameters, which columns it reads, and the time and FLOPs of its forward and backward as
  mc.trace measured them;
- the top-5 classes with their probabilities (softmax of the output);
- the backward pass: the gradient of the predicted class's logit (or, given ``label``, of the
  cross-entropy loss for that label) with respect to every column's output, drawn the same way;
- for a clicked unit of a convolution: the input window it reads, its filter, the products and
  their sum plus the bias, next to the value minicnn's forward wrote; then the ReLU, BatchNorm,
  LRN and pooling steps that follow it; the op's formula and derivative and the file:line of its
  three definitions (mc.explain's).

Columns are ops, not modules: the ops are what runs, so a ResNet's shortcut additions, a
reshape, or an ONNX graph's nodes (which have no module of their own) are columns too. The
ops are watched the way mc.trace and the ONNX exporter watch them (autograd.observe). A
column is named after the module that ran it ("layer1.0.conv1"); an op of no named module
after the parameter it reads ("conv1" for an ONNX Conv reading "conv1.weight"), else after
the op and a count ("relu_3"). A named module that ran no op (Dropout in eval mode) gets a
column that says it passed its input through. Each column lists the columns it reads, which
is how a ResNet block's two paths show.

What the file holds, and how big it gets:

- pictures: each column's output and gradient as one PNG (every channel a tile of a grid),
  8 bits per pixel, a channel wider than TILE_SIDE pixels shown every k-th pixel. Outputs are
  grey (black: the layer's minimum, white: its maximum), gradients blue (negative), white (0)
  and red (positive), each scaled to the layer's largest magnitude;
- exact numbers, float32 as in the forward (base64 of the bytes): each convolution's input
  and output, whole where they hold at most EXACT_NUMBERS numbers together, else for a centred
  block of outputs and the inputs it reads; its filters, all of them when the weight has at
  most ALL_FILTERS numbers, else those of the STRONGEST_FILTERS channels that respond most
  (the page says which); the bias, and the parameters of the BatchNorm that follows.

The paper's AlexNet on a 227x227 image makes a page of 10.6 MB, alexnet_small on a 24x24 digit
1.3 MB (docs/explore.md).
"""

import base64
import io
import json
import math
from pathlib import Path

import numpy as np

from . import autograd
from .device import to_numpy
from .explain import OPS as EXPLAINED_OPS, locations
from .files import atomic_write
from .tensor import Parameter, Tensor
from .trace import trace as _trace

PAGE_TEMPLATE = Path(__file__).with_name("explore_page.html")
TILE_SIDE = 32              # a channel is drawn at most this many pixels wide (every k-th pixel beyond)
VECTOR_WIDTH = 64           # a vector is drawn as rows of this many units
EXACT_NUMBERS = 1 << 19     # a convolution's input + output kept exactly up to this many numbers
ALL_FILTERS = 1 << 16       # every filter kept when the weight has at most this many numbers ...
STRONGEST_FILTERS = 16      # ... else those of the channels with the largest response

# the Function names of the ops mc.explain knows
EXPLAIN_KEYS = {"Conv2d": "conv2d", "Linear": "linear", "MaxPool2d": "max_pool2d", "AvgPool2d": "avg_pool2d",
                "LocalResponseNorm": "local_response_norm", "ReLU": "relu", "Dropout": "dropout"}
# the ops after a convolution whose step the page recomputes for a clicked unit
STEP_OPS = ("ReLU", "BatchNorm", "LocalResponseNorm", "MaxPool2d", "AvgPool2d")


# --------------------------------------------------------------------------- watching the forward
class _Recorder:
    """Keeps each op the forward runs (outermost ops only: an op inside another is part of it)
    with its arguments and output, and the mc.trace record of its forward and of its backward.

    It is entered after the trace, so it sees each op after the trace has opened the op's
    record: at op_started, the trace's last record is this op's."""

    def __init__(self, trace):
        self.trace = trace
        self.ops = []                 # dicts: node, inputs, output, forward (trace record)
        self.backward_records = {}    # id(node) -> the trace record of its backward
        self.passed_through = []      # (index in ops, module) of modules that ran no op
        self.model_done = False       # set once the model's forward has returned: later ops are not its
        self._depth = 0
        self._opened = None

    def op_started(self, node, phase):
        if phase == "backward":
            self.backward_records[id(node)] = self.trace.records[-1]
        elif phase == "forward" and not self.model_done:
            self._depth += 1
            if self._depth == 1:
                self._opened = self.trace.records[-1]

    def op_finished(self, node, phase, inputs, output):
        if phase != "forward" or self.model_done:
            return
        self._depth -= 1
        if self._depth:
            return
        output = output[0] if isinstance(output, tuple) else output
        if output.requires_grad:
            output.retain_grad()
        self.ops.append(dict(node=node, inputs=inputs, output=output, forward=self._opened))


def _watch_idle_modules(model, recorder):
    """Hooks on the leaf modules: a module whose forward ran no op (Dropout in eval mode, Identity)
    is remembered with the place it had among the ops. Returns the hook handles."""
    handles, ops_before = [], {}
    for module in model.modules():
        if module._modules:
            continue

        def before(module, inputs):
            ops_before[id(module)] = len(recorder.ops)

        def after(module, inputs, output):
            if len(recorder.ops) == ops_before.get(id(module)):
                recorder.passed_through.append((len(recorder.ops), module, output))
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


# --------------------------------------------------------------------------- pictures
def _png(rgb):
    """An (H, W, 3) uint8 array as a PNG data URI (Pillow writes it)."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("mc.explore draws its pictures with Pillow (pip install pillow)") from e
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colours(values, diverging):
    """Values -> (..., 3) uint8: grey from the minimum (black) to the maximum (white), or, diverging,
    blue (negative) - white (0) - red (positive), full colour from the 99th percentile of the
    magnitudes on (gradients are sparse: scaled to their largest, most would look white).
    NaN: the background. Returns the colours and the values of the two ends of the scale."""
    finite = values[np.isfinite(values)]
    rgb = np.empty(values.shape + (3,), np.uint8)
    if diverging:
        scale = float(np.percentile(np.abs(finite), 99)) if finite.size else 0.0
        t = np.clip(np.nan_to_num(values) / (scale or 1.0), -1.0, 1.0)
        fade = (255 * (1 - np.abs(t))).astype(np.uint8)
        rgb[..., 0] = np.where(t < 0, fade, 255)
        rgb[..., 1] = fade
        rgb[..., 2] = np.where(t > 0, fade, 255)
        low, high = -scale, scale
    else:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        t = (np.nan_to_num(values, nan=low) - low) / ((high - low) or 1.0)
        rgb[...] = (255 * np.clip(t, 0, 1)).astype(np.uint8)[..., None]
    rgb[np.isnan(values)] = (235, 235, 235)
    return rgb, low, high


def _maps(array):
    """A column's output as (channels, height, width) maps: a feature map as it is, a vector as
    rows of VECTOR_WIDTH units (NaN after its end)."""
    if array.ndim == 3:
        return array.astype(np.float64)
    flat = array.reshape(-1).astype(np.float64)
    width = min(flat.size, VECTOR_WIDTH)
    rows = -(-flat.size // width)
    padded = np.full(rows * width, np.nan)
    padded[:flat.size] = flat
    return padded.reshape(1, rows, width)


def picture(array, diverging=False):
    """One PNG of every channel of ``array`` (one sample's output or gradient), tiled in a grid,
    and the layout the page needs to find the unit under a click."""
    maps = _maps(array)
    channels, height, width = maps.shape
    step = max(1, -(-max(height, width) // TILE_SIDE))
    small = maps[:, ::step, ::step]
    tile_h, tile_w = small.shape[1:]
    columns = math.ceil(math.sqrt(channels))
    rows = -(-channels // columns)
    grid = np.full((rows * (tile_h + 1) - 1, columns * (tile_w + 1) - 1), np.nan)
    for c in range(channels):
        top, left = (c // columns) * (tile_h + 1), (c % columns) * (tile_w + 1)
        grid[top:top + tile_h, left:left + tile_w] = small[c]
    rgb, low, high = _colours(grid, diverging)
    return dict(png=_png(rgb), channels=channels, height=height, width=width, step=step, tile_h=tile_h,
                tile_w=tile_w, columns=columns, low=low, high=high, vector=array.ndim != 3)


def _floats(array):
    """float32 bytes as base64: the page reads them back into a Float32Array, bit for bit."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


# --------------------------------------------------------------------------- a convolution's numbers
def _stored_block(out_h, out_w, numbers_per_output):
    """Rows and columns [r0, r1) x [c0, c1) of the outputs whose numbers the page keeps: all,
    or the largest centred square block within EXACT_NUMBERS."""
    side = max(1, int(math.sqrt(EXACT_NUMBERS / numbers_per_output)))
    rows, cols = min(out_h, side), min(out_w, side)
    r0, c0 = (out_h - rows) // 2, (out_w - cols) // 2
    return r0, r0 + rows, c0, c0 + cols


def convolution_numbers(x, weight, bias, stride, pads, groups, dilation, y):
    """What the page needs to redo one output of a convolution: the (zero-padded) input that the
    stored block of outputs reads, those outputs, the filters and the bias. x: (C, H, W), y: (O, OH, OW)."""
    (sh, sw), (dh, dw), (top, bottom, left, right) = stride, dilation, pads
    out_ch, _, kh, kw = weight.shape
    _, out_h, out_w = y.shape
    # numbers per output position: its output channels, and the inputs under a stride step
    per_output = out_ch + x.shape[0] * sh * sw
    whole = x.size + y.size <= EXACT_NUMBERS
    r0, r1, c0, c1 = (0, out_h, 0, out_w) if whole else _stored_block(out_h, out_w, per_output)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    row_start, col_start = r0 * sh, c0 * sw            # in the padded input's coordinates
    row_end, col_end = (r1 - 1) * sh + (kh - 1) * dh + 1, (c1 - 1) * sw + (kw - 1) * dw + 1
    block = y[:, r0:r1, c0:c1]
    if weight.size <= ALL_FILTERS:
        kept = list(range(out_ch))
    else:
        kept = sorted(np.argsort(-block.reshape(out_ch, -1).max(axis=1), kind="stable")[:STRONGEST_FILTERS].tolist())
    return dict(stride=[sh, sw], dilation=[dh, dw], pads=[top, bottom, left, right], groups=groups,
                kernel=[kh, kw], in_channels=x.shape[0], in_height=x.shape[1], in_width=x.shape[2],
                block=[r0, r1, c0, c1], input_origin=[row_start, col_start],
                input_shape=[x.shape[0], row_end - row_start, col_end - col_start],
                input=_floats(padded[:, row_start:row_end, col_start:col_end]), output=_floats(block),
                filter_channels=kept, filters=_floats(weight[kept]),
                bias=None if bias is None else _floats(bias))


def _step_parameters(op, inputs):
    """The settings of an op after a convolution, for the page to redo its step (STEP_OPS)."""
    if op == "ReLU":
        return dict(negative_slope=float(inputs[1]))
    if op == "BatchNorm":
        mean, var, weight, bias = (None if a is None else to_numpy(a.data if isinstance(a, Tensor) else a)
                                   for a in inputs[1:5])
        return dict(mean=_floats(mean), var=_floats(var), eps=float(inputs[7]),
                    weight=None if weight is None else _floats(weight), bias=None if bias is None else _floats(bias))
    if op == "LocalResponseNorm":
        size, alpha, beta, k, divide = inputs[1:6]
        return dict(size=int(size), coefficient=float(alpha / size if divide else alpha), beta=float(beta), k=float(k))
    kernel, stride, pads = inputs[1:4]             # MaxPool2d, AvgPool2d
    count_pads = bool(inputs[5]) if op == "AvgPool2d" else None
    return dict(kernel=list(kernel), stride=list(stride), pads=list(pads), count_include_pad=count_pads)


# --------------------------------------------------------------------------- explain's facts
def _explanation(op):
    key = EXPLAIN_KEYS.get(op)
    if key is None:
        return None
    formula, derivative, *_ = EXPLAINED_OPS[key]
    places = [dict(kind=kind, name=name, where=f"{path}:{line}") for kind, name, path, line in locations(key)]
    return dict(key=key, formula=formula, derivative=derivative, definitions=places)


# --------------------------------------------------------------------------- the page
def _as_input(image, device):
    array = to_numpy(image.data) if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"explore: image must be one (C, H, W) input of the model (or (1, C, H, W)), "
                         f"got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"explore: image must hold floats (the model's input, normalized as in training), "
                        f"got {array.dtype}")
    return Tensor(array[None].astype(np.float32), requires_grad=True).to(device)


def _device_of(model):
    for p in model.parameters():
        return p.device
    return "cpu"


def _run(model, x, label):
    """Forward and backward of one image under mc.trace, watching every op: (recorder, logits, target, output)."""
    with _trace(model=model) as trace:
        recorder = _Recorder(trace)
        handles = _watch_idle_modules(model, recorder)
        try:
            with autograd.observe(recorder):
                output = model(x)
                recorder.model_done = True
                if output.ndim != 2 or output.shape[0] != 1:
                    raise ValueError(f"explore: the model must give one row of class scores per image, "
                                     f"got an output of shape {output.shape}")
                logits = to_numpy(output.data)[0].astype(np.float64)
                if label is None:
                    target = int(np.argmax(logits))
                    output[0, target].backward()
                else:
                    from .functional import cross_entropy
                    if not 0 <= int(label) < logits.size:
                        raise ValueError(f"explore: label {label} is not a class of this model "
                                         f"(0 .. {logits.size - 1})")
                    target = int(label)
                    cross_entropy(output, np.array([target])).backward()
        finally:
            for handle in handles:
                handle.remove()
    return recorder, logits, target, output


def _timing(record):
    if record is None:
        return None
    return dict(ms=record["seconds"] * 1e3 if record["seconds"] is not None else None, flops=record["flops"])


def explore(model, image, path, label=None, class_names=None, title=None):
    """Write ``path``: one self-contained HTML page showing ``model`` run forward and backward on
    ``image`` (see the module's docstring). image: one input of the model, (C, H, W) or
    (1, C, H, W), normalized as the model expects. label: None for the gradient of the
    predicted class's logit, or a class id for the gradient of the cross-entropy loss for it.
    class_names: the classes' names (default "0", "1", ...). Returns the path.

    The model runs in eval mode (Dropout off, BatchNorm on its running statistics); its modes
    and its parameters' gradients are as they were afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    gradients = [(p, p.grad) for p in model.parameters()]
    model.eval()
    try:
        x = _as_input(image, _device_of(model))
        recorder, logits, target, output = _run(model, x, label)
        page = _page_data(model, x, recorder, logits, target, label, class_names, title, output)
    finally:
        for module, training in modes:
            module.training = training
        for parameter, grad in gradients:
            parameter.grad = grad
    html = PAGE_TEMPLATE.read_text(encoding="utf-8")
    payload = json.dumps(page, separators=(",", ":")).replace("</", "<\\/")   # nothing in it ends the <script>
    with atomic_write(path, "w") as f:
        f.write(html.replace("__EXPLORE_DATA__", payload))
    return path


def _page_data(model, x, recorder, logits, target, label, class_names, title, output):
    module_names = {id(m): name for name, m in model.named_modules() if name}
    parameter_names = {id(p): name for name, p in model.named_parameters()}
    counts = {}

    def unique(name):
        counts[name] = counts.get(name, 0) + 1
        return name if counts[name] == 1 else f"{name}#{counts[name]}"

    def fallback_name(op, inputs):
        for a in inputs:
            if isinstance(a, Parameter) and id(a) in parameter_names:
                return parameter_names[id(a)].rsplit(".", 1)[0]
        key = EXPLAIN_KEYS.get(op, op.lower())
        counts[key + "_"] = counts.get(key + "_", 0) + 1
        return f"{key}_{counts[key + '_']}"

    columns = [dict(name="input", op="Input", shape=list(x.shape[1:]), params=0, reads=[],
                    picture=picture(to_numpy(x.data)[0]), gradient=picture(to_numpy(x.grad)[0], diverging=True),
                    forward=None, backward=None, explain=None, conv=None, image=_image(to_numpy(x.data)[0]))]
    made_by = {id(x): "input"}          # tensor -> the column that made it
    idle = list(recorder.passed_through)
    for index, op in enumerate(recorder.ops + [None]):
        while idle and idle[0][0] == index:         # modules that ran no op, where they ran
            _, module, passed = idle.pop(0)
            name = unique(module_names.get(id(module), type(module).__name__))
            columns.append(dict(name=name, op=type(module).__name__, passes_through=True, shape=None, params=0,
                                reads=[made_by.get(id(passed), "?")], picture=None, gradient=None,
                                forward=None, backward=None, explain=_explanation(type(module).__name__), conv=None))
            made_by[id(passed)] = name
        if op is None:
            break
        node, inputs, out = op["node"], op["inputs"], op["output"]
        module = module_names.get(id(node.module))
        name = unique(module or fallback_name(node.name, inputs))
        reads = [made_by[id(a)] for a in inputs if isinstance(a, Tensor) and id(a) in made_by]
        params = sum(a.data.size for a in inputs if isinstance(a, Parameter))
        value = to_numpy(out.data)[0]
        grad = out.grad
        column = dict(name=name, op=node.name, shape=list(value.shape), params=int(params), reads=reads,
                      picture=picture(value),
                      gradient=None if grad is None else picture(to_numpy(grad)[0], diverging=True),
                      forward=_timing(op["forward"]), backward=_timing(recorder.backward_records.get(id(node))),
                      explain=_explanation(node.name), conv=None, step=None)
        if node.name == "Conv2d":
            xs, weight, bias = (None if a is None else to_numpy(a.data) for a in inputs[:3])
            column["conv"] = convolution_numbers(xs[0], weight, bias, *inputs[3:7], value)
        if node.name in STEP_OPS:
            column["step"] = _step_parameters(node.name, inputs)
        made_by[id(out)] = name
        columns.append(column)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    names = list(class_names) if class_names is not None else [str(i) for i in range(logits.size)]
    if len(names) != logits.size:
        raise ValueError(f"explore: {len(names)} class names for {logits.size} outputs")
    top = np.argsort(-probabilities, kind="stable")[:5]
    backward_of = (f"the logit of the predicted class {names[target]!r}" if label is None else
                   f"the cross-entropy loss for the label {names[target]!r}")
    return dict(title=title or type(model).__name__, output=made_by.get(id(output)),
                top5=[dict(cls=int(c), name=names[c], probability=float(probabilities[c]), logit=float(logits[c]))
                      for c in top],
                backward_of=backward_of, columns=columns)


def _image(x):
    """A 3-channel input as a colour picture (each channel scaled from its minimum to its maximum)."""
    if x.shape[0] != 3:
        return None
    low = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - low
    scaled = (255 * (x - low) / np.where(span > 0, span, 1)).astype(np.uint8)
    return _png(scaled.transpose(1, 2, 0))
