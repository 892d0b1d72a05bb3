"""Checkpoints: mc.save / mc.load of a training run's whole state.

A checkpoint is one NumPy .npz file (a zip archive, each member CRC-checked):
every array (model weights, optimizer buffers) is a member of its own, and
everything else (epoch, RNG state, history, optimizer settings, user extras) is
a JSON document in the member "meta.json", in which each array appears as
{"__array__": member name}. No pickle: loading a checkpoint runs no code.

Writes are atomic (files.atomic_write): the file is written under a temporary
name in the same folder and renamed over the final name only when complete and on
disk, so a crash mid-write leaves the previous checkpoint intact, never a broken
one; the temporary a killed save leaves behind is removed by the next save to the
same path.
"""

import json
import os
import zipfile

import numpy as np

from . import device as _device
from . import random as _random
from .files import atomic_write
from .history import History

FORMAT = "minicnn-checkpoint"
VERSION = 1


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
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}  # reading checks every member's CRC
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a minicnn checkpoint ({type(e).__name__}: {e})") from e
    try:
        meta = json.loads(str(arrays.pop("meta.json")))
    except (KeyError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is not a minicnn checkpoint (no readable meta.json)") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a minicnn checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has format version {meta.get('version')}, this minicnn reads {VERSION}")
    try:
        return _unpack(meta, arrays)
    except KeyError as e:
        raise ValueError(f"checkpoint {path} is corrupt: array {e} is missing") from e


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
