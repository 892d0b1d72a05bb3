"""python -m minicnn transfer: transfer learning on real data, on a laptop CPU in a few minutes.

1. Pretrain the small AlexNet (mc.models.alexnet_small, He initialisation) on the MNIST
   digits 0-4 of mnist5k, with shifts of up to 2 pixels as augmentation.
2. Learn the digits 5-9 from only a few labelled examples per class (--shots), three ways,
   on the same examples, and test each on the held-out 5-9 digits:
   - frozen:     the pretrained layers up to --cut (relu4), frozen, and a new head
                 (dropout and a dense layer on the flattened features, --head) trained
                 on features computed once;
   - fine-tuned: that model again with the layers from --fine-tune-from (conv3) up
                 unfrozen, trained end to end from there;
   - scratch:    the same network from random weights, every layer trained.
   Few-shot errors vary a lot with the examples drawn, so each way is averaged over
   --draws draws. For comparison the frozen base up to pool5 under the global-average-
   pooling head is trained too.
3. A binary task with a one-logit head (binary cross-entropy): faces against non-faces
   in scikit-image's lfw_subset (25x25 grey images), learned from --face-shots images per
   class with the same digit-pretrained layers, the same three ways.

Prints one labelled line per way and draw, and writes metrics.json, transfer.png
(test error per way, with the spread over the draws) and the pretrained network
(pretrained.npz) to --out.
"""

import json
import os
import time

import numpy as np

from .. import data as D
from .. import models, nn, optim, transfer
from .. import random as _random
from ..checkpoint import save
from ..files import atomic_write, save_figure
from ..training import fit
from ..visualize import pyplot
from .common import HelpFormatter
from .train import describe_test_set


DIGIT_NAMES = [f"digit {d}" for d in range(5, 10)]   # the classes 0-4 of the second task
FACE_NAMES = ["non-face", "face"]                      # the classes 0, 1 of the third
FACES_PER_CLASS = 100                                  # lfw_subset: 100 faces, 100 non-faces


def add_transfer_parser(commands, common):
    """The command `transfer`: its options; transfer_command checks them against the data."""
    p = commands.add_parser("transfer", parents=[common], formatter_class=HelpFormatter, description=__doc__,
                            help="transfer learning from few examples (its own options: transfer --help)")
    p.add_argument("--out", default=None, help="folder for metrics.json, transfer.png and pretrained.npz "
                                               "(default: runs/transfer-<time>)")
    p.add_argument("--shots", type=int, default=5, help="labelled examples per class of the digits 5-9")
    p.add_argument("--draws", type=int, default=10,
                   help="how many random draws of the few examples to average over (few-shot errors vary a lot)")
    p.add_argument("--face-shots", type=int, default=20, help="labelled images per class of the faces task")
    p.add_argument("--pretrain-epochs", type=int, default=3, help="epochs on the digits 0-4")
    p.add_argument("--cut", default="relu4", help="the last pretrained layer kept under the new head")
    p.add_argument("--head", choices=("avg", "flatten"), default="flatten",
                   help="the head's pooling: global average, or flatten (keeps where the strokes are)")
    p.add_argument("--fine-tune-from", default="conv3", help="the lowest layer the fine-tuned model trains")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="only the summaries: no line per epoch of pretraining, "
                                                       "nor per way and draw")
    p.set_defaults(run=transfer_command, parser=p)   # parser: check_options reports through its error()


def check_options(args, digit_labels):
    """Stop with the command's usage and exit status 2 (argparse's error) on options that cannot
    work, before anything runs. digit_labels: the labels of mnist5k's training digits, or a
    function that reads them (called only once the other options are fine, so a mistake is
    reported at once)."""
    error = args.parser.error
    if min(args.shots, args.draws, args.face_shots, args.pretrain_epochs) < 1:
        error("--shots, --draws, --face-shots and --pretrain-epochs must be >= 1")
    layers = list(models.alexnet_small(include_top=False)._modules)
    if args.cut not in layers:
        error(f"--cut {args.cut!r} is not a layer of the small AlexNet's base; choose from {layers}")
    below = layers[:layers.index(args.cut) + 1]
    if args.fine_tune_from not in below + ["head"]:
        error(f"--fine-tune-from {args.fine_tune_from!r} must be a layer up to --cut ({below}) or 'head'")
    # enough examples for the shots, checked now rather than after minutes of pretraining
    if callable(digit_labels):
        digit_labels = digit_labels()
    fewest, name = min((int((digit_labels == d + 5).sum()), DIGIT_NAMES[d]) for d in range(5))
    if args.shots > fewest:
        error(f"--shots {args.shots}: {name} has only {fewest} training examples; use --shots {fewest} or less")
    if args.face_shots >= FACES_PER_CLASS:
        error(f"--face-shots {args.face_shots}: lfw_subset has {FACES_PER_CLASS} faces and {FACES_PER_CLASS} "
              f"non-faces, and some must be left to test on; use --face-shots {FACES_PER_CLASS - 1} or less")


def he_init(model):
    """He (Kaiming) initialisation: weights ~ N(0, 2 / fan_in), biases 0.

    Why: with PyTorch's default initialisation the small AlexNet's signal shrinks
    layer after layer (two LRNs divide by 2^0.75 each), its first epochs sit on a
    plateau, and Adam leaves a quarter of the conv5 units dead; He's scale keeps
    the activations' variance through the ReLUs.
    """
    rng = _random.generator()
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in = layer.weight.numel() // layer.weight.shape[0]
            std = np.float32(np.sqrt(2.0 / fan_in))
            layer.weight.data = std * rng.standard_normal(layer.weight.shape, dtype=np.float32)
            layer.bias.data = np.zeros(layer.bias.shape, np.float32)
    return model


def _few_shots(labels, shots, rng, class_names):
    """Indices of ``shots`` examples of each class, drawn at random."""
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            raise ValueError(f"only {len(members)} examples of {class_names[c]}, fewer than {shots} shots")
        picked.extend(rng.choice(members, shots, replace=False))
    return np.sort(np.array(picked))


def _loader(images, labels, seed, batch_size=10):
    return D.DataLoader(D.ArrayDataset(images, labels), batch_size=batch_size, shuffle=True, seed=seed, prefetch=0)


WAYS = (("frozen", "frozen base + new head"), ("fine_tuned", "fine-tuned"), ("scratch", "from scratch"),
        ("frozen_pool5_avg_head", "(frozen to pool5, avg head)"))


def _three_ways(pretrained, num_classes, x, y, x_test, y_test, args, seed, say):
    """Train frozen, fine-tuned and from-scratch models on (x, y); their test errors.
    say(way, test_error, seconds) is told of each way when it is trained and tested."""
    loss_fn = transfer.loss_function(num_classes)
    verbose = False   # one line per way (say), not one per epoch
    shape = x.shape[1:]
    errors, clock = {}, [time.perf_counter()]

    def done(way, model):
        errors[way] = transfer.error_rate(model, x_test, y_test)
        now = time.perf_counter()
        say(way, errors[way], now - clock[0])
        clock[0] = now

    def build(base):
        return transfer.transfer_model(base, num_classes, cut=args.cut, dropout=0.2, pool=args.head,
                                       input_shape=shape)

    # frozen: the pretrained layers up to --cut (shared with `pretrained`, never changed)
    # and a new head, trained on features computed once
    _random.manual_seed(seed)
    frozen = build(pretrained)
    transfer.fit_cached(frozen, x, y, epochs=100, optimizer=optim.Adam(frozen.parameters(), lr=0.01),
                        batch_size=10, seed=seed, verbose=verbose)
    done("frozen", frozen)

    # fine-tuned: a copy of the frozen model (the head it learned included), with the layers
    # from --fine-tune-from up trainable
    tuned = build(models.alexnet_small(num_classes=5))
    tuned.load_state_dict(frozen.state_dict())
    transfer.fine_tune_from(tuned, args.fine_tune_from)
    fit(tuned, _loader(x, y, seed), epochs=25, optimizer=optim.Adam(transfer.trainable_parameters(tuned), lr=1e-3),
        loss_fn=loss_fn, verbose=verbose)
    done("fine_tuned", tuned)

    # scratch: the same network from random weights, every layer trained on the same examples
    _random.manual_seed(seed)
    scratch = build(he_init(models.alexnet_small(num_classes=5)))
    transfer.unfreeze(scratch)
    fit(scratch, _loader(x, y, seed), epochs=25, optimizer=optim.Adam(scratch.parameters(), lr=1e-3),
        loss_fn=loss_fn, verbose=verbose)
    done("scratch", scratch)

    # for comparison: the frozen base up to pool5 under the global-average-pooling head
    _random.manual_seed(seed)
    pooled = transfer.transfer_model(pretrained, num_classes, cut="pool5", dropout=0.2, pool="avg")
    transfer.fit_cached(pooled, x, y, epochs=100, optimizer=optim.Adam(pooled.parameters(), lr=0.01),
                        batch_size=10, seed=seed, verbose=verbose)
    done("frozen_pool5_avg_head", pooled)
    return errors


def _summarise(runs, frozen_model_counts, say):
    """Mean test error of each way over the draws, printed and returned with the counts."""
    out = {}
    say(f"  mean over the {len(runs)} draws:")
    for name, title in WAYS:
        errors = [r[name] for r in runs]
        trainable, frozen = frozen_model_counts[name]
        say(f"  {title:28s} test error {np.mean(errors):7.2%}  (draws: "
            f"{', '.join(f'{e:.1%}' for e in errors)}; {trainable:,} trained / {frozen:,} frozen parameters)")
        out[name] = dict(test_error=float(np.mean(errors)), test_error_per_draw=errors,
                         trainable_parameters=trainable, frozen_parameters=frozen)
    return out


def _counts(num_classes, shape, args):
    """(trainable, frozen) parameter counts of the three ways (on a stand-in network of the same shape)."""
    model = transfer.transfer_model(models.alexnet_small(num_classes=5), num_classes, cut=args.cut, pool=args.head,
                                    input_shape=shape)
    counts = {"frozen": transfer.count_parameters(model)}
    counts["fine_tuned"] = transfer.count_parameters(transfer.fine_tune_from(model, args.fine_tune_from))
    counts["scratch"] = (sum(counts["frozen"]), 0)
    pooled = transfer.transfer_model(models.alexnet_small(num_classes=5), num_classes, cut="pool5", pool="avg")
    counts["frozen_pool5_avg_head"] = transfer.count_parameters(pooled)
    return counts


def transfer_command(args):
    """The command: run the demonstration, write metrics.json; returns 0 (the exit status)."""
    digits = []   # mnist5k as arrays, read once the options that need no data are checked

    def training_labels():
        digits.extend(D.stack(part) for part in D.mnist5k())
        return digits[0][1]
    check_options(args, training_labels)
    faces = _lfw()   # before the output folder: a missing package stops the command before it starts
    out = args.out or os.path.join("runs", time.strftime("transfer-%Y%m%d-%H%M%S"))
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        run(args, data=(digits[0], digits[1], faces), out=out)
    except BaseException:
        if created and not os.listdir(out):  # a failed run leaves no empty folder behind
            os.rmdir(out)
        raise
    return 0


def run(args, data=None, out=None):
    """The demonstration with parsed ``args``; returns the metrics it writes.
    data: ((x_train, y_train), (x_test, y_test), (faces_x, faces_y)), read here when None."""
    out = out or args.out or os.path.join("runs", time.strftime("transfer-%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    say = print
    t0 = time.perf_counter()

    # ---- data: MNIST digits (values in [0, 1]) split by class; the 5-9 labels become 0-4
    if data is None:
        data = (D.stack(D.mnist5k()[0]), D.stack(D.mnist5k()[1]), _lfw())
    (x_train, y_train), (x_test, y_test), (faces_x, faces_y) = data
    low_train, low_test = y_train < 5, y_test < 5

    # ---- 1. pretraining on the digits 0-4, with shifts of up to 2 pixels as augmentation
    say(f"pretraining alexnet_small on {low_train.sum()} digits 0-4 ({args.pretrain_epochs} epochs)")
    _random.manual_seed(args.seed)
    pretrained = he_init(models.alexnet_small(num_classes=5))
    loader = D.DataLoader(D.ArrayDataset(x_train[low_train], y_train[low_train]), batch_size=64, shuffle=True,
                          seed=args.seed, transform=D.RandomCrop(28, padding=2))
    fit(pretrained, loader, epochs=args.pretrain_epochs, optimizer=optim.Adam(pretrained.parameters(), lr=1e-3),
        verbose=not args.quiet)
    pretrain_error = transfer.error_rate(pretrained, x_test[low_test], y_test[low_test])
    say(f"  pretrained test error on the digits 0-4: {pretrain_error:.2%} ({time.perf_counter() - t0:.0f}s)")
    save_pretrained(os.path.join(out, "pretrained.npz"), pretrained, args, x_test[low_test], y_test[low_test])

    # ---- 2. the digits 5-9 from a few examples each, over several draws of the examples
    rng = np.random.default_rng(args.seed)
    high_x, high_y = x_train[~low_train], y_train[~low_train] - 5
    test_x, test_y = x_test[~low_test], y_test[~low_test] - 5
    say(f"digits 5-9 from {args.shots} examples per class, {args.draws} draws, tested on {len(test_y)} digits; "
        f"base up to {args.cut}, {args.head} head, fine-tuned from {args.fine_tune_from}")
    runs = []
    for draw in range(args.draws):
        picked = _few_shots(high_y, args.shots, rng, DIGIT_NAMES)
        runs.append(_three_ways(pretrained, 5, high_x[picked], high_y[picked], test_x, test_y, args,
                                args.seed + draw, _reporter("digits 5-9", draw, args, say)))
    digits = _summarise(runs, _counts(5, high_x.shape[1:], args), say)
    digit_errors = {title: [r[name] for r in runs] for name, title in WAYS}

    # ---- 3. faces against non-faces, one logit
    say(f"faces vs non-faces (lfw_subset) from {args.face_shots} images per class, {args.draws} draws, "
        f"tested on the other {len(faces_y) - 2 * args.face_shots}; one logit, binary cross-entropy")
    runs = []
    for draw in range(args.draws):
        picked = _few_shots(faces_y, args.face_shots, rng, FACE_NAMES)
        rest = np.setdiff1d(np.arange(len(faces_y)), picked)
        runs.append(_three_ways(pretrained, 2, faces_x[picked], faces_y[picked], faces_x[rest], faces_y[rest],
                                args, args.seed + draw,
                                _reporter("faces", draw, args, say)))
    faces = _summarise(runs, _counts(2, faces_x.shape[1:], args), say)
    transfer_errors({f"digits 5-9, {args.shots} examples per class": digit_errors,
                               f"faces vs non-faces, {args.face_shots} per class":
                                   {title: [r[name] for r in runs] for name, title in WAYS}},
                              os.path.join(out, "transfer.png"))

    seconds = time.perf_counter() - t0
    metrics = {
        "pretrain": {"digits": "0-4", "images": int(low_train.sum()), "epochs": args.pretrain_epochs,
                     "test_error": pretrain_error},
        "digits_5_9": {"shots_per_class": args.shots, "draws": args.draws, "test_images": int(len(test_y)),
                       **digits},
        "faces": {"dataset": "skimage lfw_subset", "shots_per_class": args.face_shots,
                  "test_images": int(len(rest)), "head": "one logit, binary cross-entropy", **faces},
        "cut": args.cut, "head": args.head, "fine_tune_from": args.fine_tune_from,
        "digits_transfer_beats_scratch": bool(max(digits["frozen"]["test_error"], digits["fine_tuned"]["test_error"])
                                              < digits["scratch"]["test_error"]),
        "seed": args.seed,
        "seconds": seconds,
    }
    with atomic_write(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    say(f"wrote {out}/: metrics.json transfer.png pretrained.npz ({seconds:.0f}s)")
    return metrics


def save_pretrained(path, model, args, test_images, test_labels):
    """The pretrained network as a checkpoint that records its data as `train`'s does, so that
    `python -m minicnn evaluate pretrained.npz` tests it again on the held-out digits 0-4 (which
    it checks, by their SHA-256, are the ones tested here); mc.weights.load reads its weights."""
    classes = [str(d) for d in range(5)]
    held_out = D.ArrayDataset(test_images, test_labels, classes=classes)
    extra = dict(model="alexnet_small", dataset="mnist5k", seed=args.seed, classes=classes, channels=1,
                 recipe=dict(resize=None, crop=28, photos=False),        # whole 28x28 digits, as pretrained
                 normalize=dict(mean=[0.0], std=[1.0]),                   # values in [0, 1], not normalised
                 test_set=describe_test_set(held_out))
    save(path, model, epoch=args.pretrain_epochs, extra=extra, class_names=classes)


def _reporter(task, draw, args, say):
    """say(way, error, seconds) for _three_ways: one labelled line per way and draw (none with --quiet)."""
    titles = dict(WAYS)

    def report(way, error, seconds):
        if not args.quiet:
            say(f"  {task} draw {draw + 1}/{args.draws}  {titles[way]:28s} test error {error:7.2%}  ({seconds:.1f}s)")
    return report


def _lfw():
    """scikit-image's lfw_subset: 100 faces then 100 non-faces, 25x25 grey in [0, 1]. Labels: face 1."""
    try:
        from skimage.data import lfw_subset
    except ImportError as e:
        raise ImportError("the faces task needs scikit-image (pip install scikit-image)") from e
    images = lfw_subset().astype(np.float32)[:, None]
    labels = np.r_[np.ones(FACES_PER_CLASS, np.int64), np.zeros(len(images) - FACES_PER_CLASS, np.int64)]
    return images, labels


def transfer_errors(tasks, path):
    """Save a bar chart of test error per way of transferring, one panel per task.

    tasks: {task title: {way: [test error of each draw, fractions]}}. A bar is the
    mean over draws, its line the range (lowest to highest draw), its dots the draws.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    rng = np.random.default_rng(0)  # horizontal jitter of the dots, the same every time
    for ax, (task, ways) in zip(axes[0], tasks.items()):
        names = list(ways)
        for x, name in enumerate(names):
            errors = 100 * np.asarray(ways[name], dtype=np.float64)
            ax.bar(x, errors.mean(), color="tab:blue", alpha=0.6)
            ax.vlines(x, errors.min(), errors.max(), color="black")
            ax.plot(x + rng.uniform(-0.15, 0.15, len(errors)), errors, "k.", markersize=4)
            ax.annotate(f"{errors.mean():.1f}%", (x, errors.max()), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8, rotation=15)
        ax.set_ylabel("test error (%)")
        ax.set_ylim(bottom=0)
        ax.set_title(task, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("test error per way of learning from few examples: mean (bar), range and draws (dots)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
