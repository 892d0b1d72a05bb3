"""Checkpoints: mc.save / mc.load of a training run's whole state.

A checkpoint is one NumPy .npz file (a zip archive, each member CRC-checked):
every array (model weights, optimizer buffers) is a member of its own, and
everything else (epoch, RNG state, history, optimizer settings, user extras) is
a JSON document in the member "meta.json", in which each array appears as
{"__array__": member name}. No pickle: loading a checkpoint runs no code.

A checkpoint from a stranger is read with bounds (see _check_members, _check_depth,
_check_values): every member's declared shape must account for exactly the bytes
the archive holds for it before any array is allocated (a header may declare a
terabyte in a 1 KB file); meta.json may nest at most MAX_META_DEPTH deep; complex
arrays anywhere, and NaN or infinite model, optimizer or scheduler values, are
refused with an error naming the entry (a NaN weight gives NaN outputs; minicnn's
weights are real).

Writes are atomic (files.atomic_write): the file is written under a temporary
name in the same folder and renamed over the final name only when complete and on
disk, so a crash mid-write leaves the previous checkpoint intact, never a broken
one; the temporary a killed save leaves behind is removed by the next save to the
same path.
"""

import json
import math
import os
import re
import zipfile

import numpy as np

from . import device as _device
from . import random as _random
from .files import atomic_write
from .history import History
from .run_checks import nonfinite_kinds

FORMAT = "minicnn-checkpoint"
VERSION = 1
MAX_META_DEPTH = 64            # how deep meta.json may nest ([ and { inside each other); mc.save writes < 10
DEFLATE_MAX_RATIO = 1032       # deflate cannot shrink data more than this: a member claiming more is lying


def _pack(value, arrays, name):
    """A JSON-able copy of ``value``, with every array moved into ``arrays``."""
    if _device.is_array(value):
        key = f"a{len(arrays)}"
        arrays[key] = _device.to_numpy(value)
        return {"__array__": key, "name": name}
    if isinstance(value, dict):
        return {str(k): _pack(v, arrays, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, arrays, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {name} of type {type(value).__name__} in a checkpoint")


def _unpack(value, archive):
    if isinstance(value, dict):
        if "__array__" in value:
            return archive[value["__array__"]]
        return {k: _unpack(v, archive) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, archive) for v in value]
    return value


def save(path, model, optimizer=None, scheduler=None, epoch=None, history=None, extra=None, class_names=None):
    """Write model and optimizer state, epoch, history, minicnn's RNG state and
    ``extra`` (a JSON-able dict, e.g. how the data were prepared) to ``path``, atomically.
    A model of the zoo (mc.models) also leaves its ``architecture`` (its builder and arguments),
    from which ``mc.models.build`` makes the network again.

    class_names: the name of each class id (a dataset's ``class_names``); by default the
    model's ``class_names`` attribute when it has one (load() sets it), else none are stored."""
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if class_names is not None and (isinstance(class_names, str) or not hasattr(class_names, "__iter__")):
        raise TypeError(f"class_names must be a list of names, one per class id, got {class_names!r}")
    arrays = {}
    meta = {
        "class_names": [str(name) for name in class_names] if class_names is not None else None,
        "architecture": _pack(getattr(model, "architecture", None), arrays, "architecture"),
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "model": _pack(dict(model.state_dict()), arrays, "model"),
        "optimizer": _pack(optimizer.state_dict(), arrays, "optimizer") if optimizer is not None else None,
        "scheduler": _pack(scheduler.state_dict(), arrays, "scheduler") if scheduler is not None else None,
        "history": history.to_dict() if history is not None else None,
        "rng": _pack(_random.get_state(), arrays, "rng"),
        "extra": _pack(extra, arrays, "extra") if extra is not None else None,
    }
    arrays["meta.json"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _read(path):
    """meta and arrays of the checkpoint at ``path``, or a ValueError saying what is wrong."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # checked first: np.load would read a .npy or a pickle instead
        with open(path, "rb") as f:
            starts_like_a_zip = f.read(4) == b"PK\x03\x04"
        if starts_like_a_zip:
            raise ValueError(f"checkpoint {path} is corrupt (a truncated or damaged .npz archive)")
        raise ValueError(f"{path} is not a minicnn checkpoint (not an .npz archive; checkpoints are written "
                         "by mc.save and by 'python -m minicnn train')")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}  # reading checks every member's CRC
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a minicnn checkpoint ({type(e).__name__}: {e})") from e
    try:
        text = str(arrays.pop("meta.json"))
        _check_depth(path, text)
        meta = json.loads(text)
    except (KeyError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is not a minicnn checkpoint (no readable meta.json: {e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {path} is not a minicnn checkpoint (meta.json is not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a minicnn checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has format version {meta.get('version')}, this minicnn reads {VERSION}")
    _check_values(path, meta, arrays)
    try:
        return _unpack(meta, arrays)
    except KeyError as e:
        raise ValueError(f"checkpoint {path} is corrupt: array {e} is missing") from e


def _check_members(path):
    """Every member of the archive: a .npy array (no pickled objects) whose header's shape and
    dtype account for exactly the bytes the archive declares for it, and no more bytes declared
    than the file can hold. Reads only the zip directory and each member's header: nothing the
    header declares is allocated before it is found true."""
    on_disk = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                where = f"checkpoint {path}: member {info.filename!r}"
                if info.compress_type == zipfile.ZIP_STORED:
                    plausible = info.file_size == info.compress_size <= on_disk
                else:
                    plausible = info.compress_size <= on_disk and info.file_size <= DEFLATE_MAX_RATIO * max(
                        info.compress_size, 1)
                if not plausible:
                    raise ValueError(f"{where} declares {info.file_size} bytes, which a {on_disk}-byte file cannot "
                                     f"hold: the archive is corrupt or crafted")
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{where} is not an array (.npy): not a minicnn checkpoint")
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                    header_size = f.tell()
                if dtype.hasobject:
                    raise ValueError(f"{where} holds Python objects (a pickle): minicnn checkpoints hold none")
                declared = math.prod(shape) * dtype.itemsize
                if header_size + declared != info.file_size:
                    raise ValueError(f"{where} declares shape {tuple(shape)} of {dtype} ({declared} bytes) but holds "
                                     f"{info.file_size - header_size} bytes: the archive is corrupt or crafted")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e})") from e


def _check_depth(path, text):
    """meta.json nests at most MAX_META_DEPTH deep: JSON nested 100,000 deep would exhaust
    the recursion of json.loads (and of _unpack). Brackets inside strings do not count."""
    brackets = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    steps = np.frombuffer(brackets.encode(), np.uint8)
    change = np.isin(steps, (ord("["), ord("{"))).astype(np.int64) - np.isin(steps, (ord("]"), ord("}")))
    depth = int(np.cumsum(change).max(initial=0))
    if depth > MAX_META_DEPTH:
        raise ValueError(f"meta.json nests {depth} deep, more than the {MAX_META_DEPTH} minicnn reads")


def _check_values(path, meta, arrays):
    """Complex arrays anywhere, and NaN or infinity in the model, optimizer or scheduler state,
    refused with the entry's name ("model.conv1.weight")."""
    def walk(value, part):
        if isinstance(value, dict):
            if "__array__" in value:
                array = arrays.get(value["__array__"])
                if array is None:
                    return
                name = value.get("name", value["__array__"])
                if array.dtype.kind == "c":
                    raise ValueError(f"checkpoint {path}: {name} is complex ({array.dtype}); minicnn's weights "
                                     f"are real, and dropping the imaginary part would change them")
                if part != "extra" and array.dtype.kind == "f" and not np.isfinite(array).all():
                    raise ValueError(f"checkpoint {path}: {name} holds {nonfinite_kinds(array)} "
                                     f"({np.count_nonzero(~np.isfinite(array))} of {array.size} values): a model "
                                     f"with such weights outputs NaN; it was saved from a run that diverged")
                return
            for v in value.values():
                walk(v, part)
        elif isinstance(value, list):
            for v in value:
                walk(v, part)
    for part, value in meta.items():
        walk(value, part)


def load(path, model=None, optimizer=None, scheduler=None, restore_rng=True):
    """Read the checkpoint at ``path`` into the objects given; return what it holds.

    model / optimizer / scheduler: loaded in place when given (their shapes and
    names must match what was saved, else a ValueError names the difference).
    restore_rng: set minicnn's global generator (dropout seeds) to the saved state.
    Returns a dict: epoch, history (a History or None), extra, class_names (a list, or
    None when the checkpoint names no classes; also set as ``model.class_names``),
    architecture (the zoo model's builder and arguments, for ``mc.models.build``, or None
    for a model not of the zoo), and the raw "model", "optimizer" and "scheduler" states.
    """
    state = _read(path)
    state.setdefault("class_names", None)       # checkpoints written before class names were stored
    state.setdefault("architecture", None)      # ... and before architectures were
    try:
        if model is not None:
            model.load_state_dict(state["model"])
            if state["class_names"] is not None:
                model.class_names = list(state["class_names"])
        if optimizer is not None:
            if state["optimizer"] is None:
                raise ValueError("it holds no optimizer state")
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            if state["scheduler"] is None:
                raise ValueError("it holds no scheduler state")
            scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"checkpoint {path} does not match: {e}") from e
    if restore_rng:
        _random.set_state(state["rng"])
    state["history"] = History.from_dict(state["history"]) if state["history"] is not None else None
    return state
