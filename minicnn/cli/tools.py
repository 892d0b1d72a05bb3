"""python -m minicnn summary | export | graph | trace | explain | explore: the tools that look into a network."""

import os

import numpy as np

from .common import ZOO, HelpFormatter, UsageError, choose_device, positive_int, user_input
from .train import image_of_file, model_of_run, read_run_checkpoint


def summary_command(args):
    import minicnn as mc
    name = args.model
    num_classes = args.num_classes or (10 if name == "alexnet_small" else 1000)
    shape = tuple(args.input_shape) if args.input_shape else ZOO[name]
    channels, height, width = shape
    builder = getattr(mc.models, name)
    with user_input():
        if name == "alexnet_small":   # built for the input: its channels and fc6's size follow it
            model = builder(num_classes=num_classes, in_channels=channels, input_size=(height, width),
                            include_top=not args.no_top)
        else:
            model = builder(num_classes=num_classes, include_top=not args.no_top)
    try:
        print(mc.summary(model, shape))
    except ValueError as e:
        built_for = "x".join(map(str, ZOO[name]))
        raise UsageError(f"{name}: {e}. {name} is built for {built_for} inputs"
                         + (" (the paper's '224' does not give conv1's 55x55)" if name == "alexnet" else "")
                         + ("; --no-top keeps only the convolutional layers, which take more sizes"
                            if not args.no_top and name != "alexnet_small" else "")) from e
    return 0


def export_command(args):
    import minicnn as mc
    _, extra = read_run_checkpoint(args.checkpoint)
    model = model_of_run(args.checkpoint, extra)
    crop = extra["recipe"]["crop"]
    example = np.zeros((2, extra["channels"], crop, crop), np.float32)   # two images: the batch stays symbolic
    with user_input(f"writing {args.output}"):
        mc.onnx.export(model, example, args.output, opset=args.opset)
    print(f"wrote {args.output}: {extra['model']} for {extra['channels']}x{crop}x{crop} inputs (normalized as in "
          f"training: mean {extra['normalize']['mean']}, std {extra['normalize']['std']}), input 'input', "
          f"output 'output' ({len(extra['classes'])} logits), opset {args.opset}")
    return 0


def graph_command(args):
    import minicnn as mc
    import minicnn.functional as F
    name = args.model
    model = getattr(mc.models, name)(num_classes=10)
    shape = ZOO[name]
    images = mc.Tensor(mc.random.generator().standard_normal((2,) + shape).astype(np.float32))
    loss = F.cross_entropy(model(images), np.array([0, 1]))     # one training step's graph
    mc.record_gradient_norms(loss)
    loss.backward()
    out = args.out or os.path.join("runs", f"graph_{name}.png")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with user_input(f"writing {out}"):
        dot = mc.draw_graph(loss, out, model=model, depth=args.depth)
    ops = sum(1 for line in dot.splitlines() if "shape=box" in line)
    leaves = sum(1 for line in dot.splitlines() if "shape=ellipse" in line)
    print(f"wrote {out}: one training step of {name} on 2 images of {'x'.join(map(str, shape))}, "
          f"{ops} op boxes and {leaves} parameters, gradient norms after backward")
    return 0


def trace_command(args):
    import minicnn as mc
    import minicnn.functional as F
    from ..backends import host
    if args.cpu_backend:
        if args.cpu_backend == "kernels" and not host.available():
            raise UsageError(host.missing_extension_message())
        mc.set_cpu_backend(args.cpu_backend)
    device = choose_device(args.device)
    name = args.model
    num_classes = 10 if name == "alexnet_small" else 1000
    mc.manual_seed(0)
    model = getattr(mc.models, name)(num_classes=num_classes).to(device)
    model.train()
    rng = mc.random.generator()
    images = mc.Tensor(rng.standard_normal((args.batch,) + ZOO[name]).astype(np.float32)).to(device)
    labels = rng.integers(0, num_classes, args.batch)
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)   # the paper's

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()          # untraced: what a first step pays once (compiling kernels on a GPU, first memory use)
    with mc.trace(model=model) as trace:
        step()
    runs_on = f"CPU, {mc.get_cpu_backend()} backend" if device == "cpu" else f"GPU, {mc.get_cuda_loader()} loader"
    print(f"one training step of {name} (forward, cross-entropy, backward, SGD) on {args.batch} images of "
          f"{'x'.join(map(str, ZOO[name]))}, {runs_on}; the second step, the first untraced\n")
    print(trace)
    print()
    print(trace.summary())
    return 0


def explain_command(args):
    import minicnn as mc
    with user_input():
        mc.explain(args.op)
    return 0


def _onnx_model(path):
    """(the model of an ONNX file, its input's (C, H, W)), or a UsageError saying why not."""
    import minicnn as mc
    import onnx
    from google.protobuf.message import DecodeError
    try:
        proto = onnx.load(path)
    except (OSError, DecodeError, ValueError) as e:
        raise UsageError(f"cannot read {path} as an ONNX model: {e}") from e
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim] \
        if inputs else []
    if len(dims) != 4 or None in dims[1:]:
        raise UsageError(f"{path}: explore needs an input of shape (batch, C, H, W) with C, H and W fixed; "
                         f"this model's input is {dims}")
    try:
        return mc.onnx.load(proto), tuple(dims[1:])
    except NotImplementedError as e:
        raise UsageError(str(e)) from e


def _class_id(label, classes):
    """--label as a class id: a class's name, or its index."""
    if label is None:
        return None
    if label in classes:
        return classes.index(label)
    if label.isdigit() and int(label) < len(classes):
        return int(label)
    raise UsageError(f"--label {label!r} is not a class of this model: give an index 0..{len(classes) - 1} "
                     f"or one of {classes[:10]}{' ...' if len(classes) > 10 else ''}")


def explore_command(args):
    import minicnn as mc
    from .. import data as D
    if args.checkpoint.endswith(".onnx"):
        model, (channels, height, width) = _onnx_model(args.checkpoint)
        with user_input(f"--image {args.image}"):
            image = D.load_image(args.image, image_size=(height, width),
                                 color_mode="grayscale" if channels == 1 else "rgb")
            if args.mean or args.std:
                image = D.Normalize(args.mean or [0.0] * channels, args.std or [1.0] * channels)(image)
        with mc.no_grad():
            classes = [str(i) for i in range(model(image[None]).shape[1])]
        title = f"{os.path.basename(args.checkpoint)} (ONNX) on {os.path.basename(args.image)}"
    else:
        if args.mean or args.std:
            raise UsageError("--mean and --std are for .onnx files: a checkpoint of 'train' normalizes "
                             "as its run did")
        _, extra = read_run_checkpoint(args.checkpoint)
        model = model_of_run(args.checkpoint, extra)
        with user_input(f"--image {args.image}"):
            image = image_of_file(args.image, extra)
        classes = [str(c) for c in extra["classes"]]
        title = f"{extra['model']} trained on {extra['dataset']}, on {os.path.basename(args.image)}"
    label = _class_id(args.label, classes)
    with user_input(f"writing {args.out}"):
        mc.explore(model, image, args.out, label=label, class_names=classes, title=title)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): open it in a browser (it needs no server and no network)")
    return 0


def add_summary_parser(commands, common):
    summary = commands.add_parser(
        "summary", parents=[common], formatter_class=HelpFormatter,
        help="print a model's layers, shapes, parameters and multiply-adds",
        description="Print each layer's output shape, parameters and multiply-adds for one input. Default "
                    "inputs: " + ", ".join(f"{m} {'x'.join(map(str, s))}" for m, s in ZOO.items()) + ".")
    summary.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models)")
    summary.add_argument("--num-classes", type=positive_int, default=None,
                         help="outputs of the last layer (default: 10 for alexnet_small, 1000 for the others)")
    summary.add_argument("--input-shape", type=positive_int, nargs=3, metavar=("C", "H", "W"),
                         help="the input, channels first (default: the one the model is built for); "
                              "alexnet_small is rebuilt for it")
    summary.add_argument("--no-top", action="store_true", help="only the convolutional layers (include_top=False)")
    summary.set_defaults(run=summary_command)


def add_export_parser(commands, common):
    export = commands.add_parser(
        "export", parents=[common], formatter_class=HelpFormatter, help="write a trained network as an ONNX file",
        description="Write the network of a checkpoint written by 'train' as an ONNX file (needs the onnx "
                    "package: pip install \"minicnn[onnx]\"); see docs/onnx.md.")
    export.add_argument("checkpoint", help="a checkpoint.npz written by 'train'")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument("--opset", type=positive_int, default=18, help="the ONNX opset version")
    export.set_defaults(run=export_command)


def add_graph_parser(commands, common):
    graph = commands.add_parser(
        "graph", parents=[common], formatter_class=HelpFormatter,
        help="draw the autograd graph of one training step",
        description="Draw the graph one training step of a zoo model records (ops, parameters, shapes and, "
                    "after backward, gradient norms), with Graphviz's dot when installed, else matplotlib.")
    graph.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models)")
    graph.add_argument("--out", default=None, help="the picture (.png, .svg, .pdf) or .dot file "
                                                   "(default: runs/graph_<model>.png)")
    graph.add_argument("--depth", type=positive_int, default=None,
                       help="collapse each layer at this depth of the model into one box (1: one box per layer)")
    graph.set_defaults(run=graph_command)


def add_trace_parser(commands, common):
    trace = commands.add_parser(
        "trace", parents=[common], formatter_class=HelpFormatter,
        help="the ops, kernel launches and GEMMs of one training step, with their work and time",
        description="Run one training step of a zoo model (forward, cross-entropy, backward, SGD with the "
                    "paper's settings) on random images under mc.trace and print every op, every kernel launch "
                    "and GEMM it made (count, shapes, FLOPs, bytes, time), then the time by op and by kernel. "
                    "A first step runs untraced, so the one shown pays no first-use costs.")
    trace.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models), for its own input size")
    trace.add_argument("--batch", type=positive_int, default=8, help="images in the step")
    trace.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: the GPU when CuPy sees one, else the CPU")
    trace.add_argument("--cpu-backend", default=None, choices=("reference", "kernels"),
                       help="on the CPU: the NumPy reference or the csrc kernels compiled for the host "
                            "(default: as MINICNN_CPU_BACKEND or mc.set_cpu_backend chose)")
    trace.set_defaults(run=trace_command)


def add_explain_parser(commands, common):
    explain = commands.add_parser(
        "explain", parents=[common], formatter_class=HelpFormatter,
        help="an op's formula, its derivative, and where its three definitions are",
        description="Print an op's forward formula and backward derivative, and the file:line of its plain-loop "
                    "definition (minicnn/naive.py), its NumPy reference and its CUDA kernels; docs/ops/ has "
                    "the whole page.")
    explain.add_argument("op", help="conv2d, linear, max_pool2d, avg_pool2d, local_response_norm, relu, dropout, "
                                    "cross_entropy, sgd or adam")
    explain.set_defaults(run=explain_command)


def add_explore_parser(commands, common):
    explore = commands.add_parser(
        "explore", parents=[common], formatter_class=HelpFormatter,
        help="write one HTML page that shows a trained network at work on one image",
        description="Run a trained network forward and backward on one image and write one self-contained HTML "
                    "page (no server, no network: open it from disk): every layer's output and gradient as "
                    "pictures, its shape, parameters, time and FLOPs, the top-5 classes, and for a clicked unit "
                    "of a convolution the window, filter and products that make its value; see docs/explore.md.")
    explore.add_argument("checkpoint", help="a checkpoint.npz written by 'train', or an .onnx file")
    explore.add_argument("--image", required=True,
                         help="the image file; resized, normalized and centre-cropped as the run's test images "
                              "(an .onnx model: resized to its input, pixels 0..1, then --mean/--std)")
    explore.add_argument("--out", required=True, help="the .html file to write")
    explore.add_argument("--label", default=None,
                         help="a class (name or index): show the gradient of the loss for it "
                              "(default: the gradient of the predicted class's logit)")
    explore.add_argument("--mean", type=float, nargs="+", default=None,
                         help="an .onnx model's per-channel mean to subtract from the 0..1 pixels (default: none)")
    explore.add_argument("--std", type=float, nargs="+", default=None,
                         help="an .onnx model's per-channel std to divide by (default: none)")
    explore.set_defaults(run=explore_command)
