"""The command line: python -m minicnn train | evaluate | summary | transfer.

    python -m minicnn train                      # the main job: small AlexNet on 5,000 MNIST digits
    python -m minicnn train --dataset cifar10:~/data/cifar-10-batches-py --epochs 30
    python -m minicnn evaluate runs/<timestamp>/checkpoint.npz --ten-crop
    python -m minicnn summary alexnet
"""

import argparse
import json
import os
import sys
import time

import numpy as np

# The main job's defaults, chosen to reach <= 3% top-1 test error on the 1,000
# held-out MNIST digits within 5 minutes on a 2-core CPU (see docs/training.md).
DEFAULTS = dict(dataset="mnist5k", model="alexnet_small", epochs=15, batch_size=64, lr=0.02, seed=0)
MODELS = ("alexnet_small", "alexnet")
CHECKPOINT_NAME = "checkpoint.npz"


# ------------------------------------------------------------------ data recipes
def load_dataset(spec, seed, model_name="alexnet_small"):
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
        side = 256 if big else 64                          # decoded straight to the size needed
        train, test = D.image_folder(path, image_size=(side, side), validation_split=0.2, seed=seed)
        recipe = dict(resize=None, crop=56, photos=True)
    elif spec.startswith("cifar10:"):
        train, test = D.cifar10(os.path.expanduser(spec[len("cifar10:"):]))
        recipe = dict(resize=None, crop=28, photos=True)
    else:
        raise SystemExit(f"error: unknown dataset {spec!r}; use mnist5k, digits, folder:PATH or cifar10:PATH")
    if big:
        recipe = dict(recipe, resize=None if spec.startswith("folder:") else 256, crop=227)
    return train, test, recipe


def build_model(name, num_classes, in_channels, input_size):
    from . import models
    if name == "alexnet_small":
        return models.alexnet_small(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if name == "alexnet":
        if in_channels != 3 or input_size != 227:
            raise SystemExit("error: alexnet takes 3x227x227 images (it is used here with photos resized to 256)")
        return models.alexnet(num_classes=num_classes)
    raise SystemExit(f"error: unknown model {name!r}; choose from {MODELS}")


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
        raise SystemExit("error: --device cuda but no CUDA GPU is usable (is CuPy installed?)")
    return name


def prepare(spec, model_name, seed):
    """Dataset, recipe and the model's input geometry, shared by train and evaluate."""
    train, test, recipe = load_dataset(spec, seed, model_name)
    channels = train[0][0].shape[0]
    return train, test, recipe, channels


# ------------------------------------------------------------------ commands
def train_command(args):
    import minicnn as mc
    from . import data as D
    from . import visualize

    device = choose_device(args.device)
    mc.manual_seed(args.seed)
    train, test, recipe, channels = prepare(args.dataset, args.model, args.seed)
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    normalize = D.fit_normalize(train, max_images=5000, seed=args.seed)
    lighting = D.fit_pca_lighting(train, max_images=2000, seed=args.seed) if recipe["photos"] and channels == 3 else None
    train_tf, test_tf, _ = make_transforms(recipe, normalize, lighting)
    train_loader = D.DataLoader(train, args.batch_size, shuffle=True, seed=args.seed, drop_last=True,
                                transform=train_tf)
    test_loader = D.DataLoader(test, 250, transform=test_tf)
    model = build_model(args.model, len(train.classes), channels, recipe["crop"]).to(device)
    # the paper's SGD; the lr is divided by 10 once, after two thirds of the epochs
    # (a fixed schedule: the test set is watched, never used to decide anything)
    optimizer = mc.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = mc.optim.StepLR(optimizer, step_size=max(1, (2 * args.epochs) // 3), gamma=0.1)
    extra = dict(model=args.model, dataset=args.dataset, seed=args.seed, classes=list(train.classes),
                 channels=channels, recipe=recipe,
                 normalize=dict(mean=normalize.mean.ravel().tolist(), std=normalize.std.ravel().tolist()))
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    print(f"training {args.model} on {args.dataset} ({len(train)} train / {len(test)} test images) "
          f"on {device} for {args.epochs} epochs; writing to {out}", file=sys.stderr)
    start = time.perf_counter()
    history = mc.fit(model, train_loader, args.epochs, optimizer, val_loader=test_loader, scheduler=scheduler,
                     checkpoint=checkpoint, checkpoint_extra=extra)
    train_seconds = time.perf_counter() - start
    result = mc.evaluate(model, test_loader)
    metrics = dict(dataset=args.dataset, model=args.model, device=device, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   train_images=len(train), test_images=len(test), train_seconds=round(train_seconds, 1),
                   test_loss=result.loss, test_top1_error=result.top1_error, test_top5_error=result.top5_error,
                   note="history's val_* entries are the held-out test set; it is only watched, never used "
                        "to choose anything (the lr schedule is fixed)",
                   history=history.to_dict())
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    history.plot(os.path.join(out, "curves.png"))
    visualize.conv1_filters(model, os.path.join(out, "conv1_filters.png"))
    # six test images spread over the set (datasets are often sorted by class), as the model sees them
    picks = np.unique(np.linspace(0, len(test) - 1, min(6, len(test))).astype(int))
    images, labels = D.stack(D.Subset(test, picks))
    visualize.top5_predictions(model, np.stack([test_tf(im) for im in images]), labels, train.classes,
                               os.path.join(out, "predictions.png"))
    print(f"test top-1 error {result.top1_error:.2%}, top-5 error {result.top5_error:.2%} "
          f"({len(test)} images; training took {train_seconds:.0f} s)")
    print(f"wrote {out}/: metrics.json {CHECKPOINT_NAME} curves.png conv1_filters.png predictions.png")
    return 0


def evaluate_command(args):
    import minicnn as mc
    from . import data as D

    device = choose_device(args.device)
    state = mc.load(args.checkpoint, restore_rng=False)
    extra = state["extra"] or {}
    missing = [k for k in ("model", "dataset", "seed", "classes", "channels", "recipe", "normalize") if k not in extra]
    if missing:
        raise SystemExit(f"error: {args.checkpoint} was not written by 'python -m minicnn train' "
                         f"(its extra lacks {missing}); load it with mc.load in Python instead")
    _, test, _, _ = prepare(extra["dataset"], extra["model"], extra["seed"])  # the same held-out images
    normalize = D.Normalize(extra["normalize"]["mean"], extra["normalize"]["std"])
    _, test_tf, ten_tf = make_transforms(extra["recipe"], normalize)
    model = build_model(extra["model"], len(extra["classes"]), extra["channels"], extra["recipe"]["crop"])
    mc.load(args.checkpoint, model, restore_rng=False)
    model.to(device)
    loader = D.DataLoader(test, 100 if args.ten_crop else 250, transform=ten_tf if args.ten_crop else test_tf)
    result = mc.evaluate(model, loader, ten_crop=args.ten_crop)
    views = "centre crop"
    if args.ten_crop:
        views = "ten-crop" if extra["recipe"]["photos"] else "five-crop (corners and centre; digits are not mirrored)"
    print(f"{extra['model']} on {extra['dataset']} test set ({len(test)} images, {views}, epoch {state['epoch']}): "
          f"loss {result.loss:.4f}, top-1 error {result.top1_error:.2%}, top-5 error {result.top5_error:.2%}")
    return 0


def summary_command(args):
    import minicnn as mc
    if args.model == "alexnet":
        model, shape = mc.models.alexnet(args.num_classes), (3, 227, 227)
    elif args.model == "alexnet_small":
        model, shape = mc.models.alexnet_small(args.num_classes), (1, 28, 28)
    else:
        raise SystemExit(f"error: unknown model {args.model!r}; choose from {MODELS}")
    print(mc.summary(model, tuple(args.input_shape) if args.input_shape else shape))
    return 0


def transfer_command(argv):
    import importlib
    try:  # imported only now: it is another issue's module and may not be installed
        transfer_demo = importlib.import_module("minicnn.transfer_demo")
    except ModuleNotFoundError as e:
        if e.name != "minicnn.transfer_demo":  # the demo exists but something it imports is missing
            raise
        raise SystemExit("error: the transfer-learning demo (minicnn/transfer_demo.py) is not part of this "
                         "installation yet") from e
    return transfer_demo.main(argv)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minicnn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a network and write metrics, checkpoint and pictures")
    train.add_argument("--dataset", default=DEFAULTS["dataset"],
                       help="mnist5k (default), digits, folder:PATH (one sub-folder per class) or cifar10:PATH")
    train.add_argument("--model", default=DEFAULTS["model"], choices=MODELS)
    train.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"])
    train.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"])
    train.add_argument("--lr", type=_positive_float, default=DEFAULTS["lr"], help="initial learning rate")
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    train.add_argument("--out", default=None, help="output folder (default runs/<timestamp>)")

    evaluate = commands.add_parser("evaluate", help="test a checkpoint written by 'train'")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--ten-crop", action="store_true",
                          help="average the predictions of the four corner crops, the centre crop and their "
                               "mirrors (the paper; digits are not mirrored)")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    summary = commands.add_parser("summary", help="print a model's layers, shapes, parameters and multiply-adds")
    summary.add_argument("model", choices=MODELS)
    summary.add_argument("--num-classes", type=_positive_int, default=None)
    summary.add_argument("--input-shape", type=_positive_int, nargs=3, metavar=("C", "H", "W"))

    commands.add_parser("transfer", help="fine-tune a pretrained network (its own options: transfer --help)",
                        add_help=False)
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "transfer":  # the demo parses its own options
        return transfer_command(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "summary" and args.num_classes is None:
        args.num_classes = 1000 if args.model == "alexnet" else 10
    return {"train": train_command, "evaluate": evaluate_command, "summary": summary_command}[args.command](args)
