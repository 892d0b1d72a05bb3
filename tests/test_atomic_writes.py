"""Runs you cannot lose: every file minicnn writes is written atomically (minicnn/files.py), and
the temporary file of a save killed with kill -9 is removed by the next save -- never one that a
live writer still holds.

The kills are real: a child process saving a large checkpoint is sent SIGKILL (or SIGSTOP) while
its temporary file exists.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn, visualize
from minicnn.files import atomic_write, remove_stale_temporaries

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.name != "posix", reason="kill -9, SIGSTOP and flock are POSIX")

# A child that saves a 128 MB checkpoint (epoch 2) to argv[1]: long enough to be caught mid-write.
BIG_SAVE = """
import sys
import minicnn as mc
from minicnn import nn
model = nn.Linear(4096, 8192)
mc.save(sys.argv[1], model, epoch=2)
"""


def temporaries(folder, name="c.npz"):
    return sorted(f for f in os.listdir(folder) if re.fullmatch(re.escape(name) + r"\.[0-9a-f]{12}\.tmp", f))


def start_big_save(path):
    """A child process saving a large checkpoint to ``path``, and the name of its temporary file
    once it exists (the child is then in the middle of writing)."""
    child = subprocess.Popen([sys.executable, "-c", BIG_SAVE, str(path)], cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        found = temporaries(path.parent)
        if found and os.path.getsize(path.parent / found[0]) > 0:
            return child, found[0]
        time.sleep(0.001)
    child.kill()
    child.wait()
    pytest.fail(f"the child's temporary file was never seen (exit status {child.returncode})")


def small_checkpoint(path, epoch):
    mc.save(str(path), nn.Linear(3, 2), epoch=epoch)


def test_a_save_killed_with_kill_9_leaves_the_old_checkpoint_and_the_next_save_removes_its_temporary(tmp_path):
    path = tmp_path / "c.npz"
    small_checkpoint(path, epoch=1)
    child, temporary = start_big_save(path)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert temporaries(tmp_path) == [temporary]           # what kill -9 leaves: nothing can remove it
    assert mc.load(str(path), restore_rng=False)["epoch"] == 1   # the old checkpoint is intact

    (tmp_path / "other.npz.0123456789ab.tmp").write_bytes(b"another target's")   # not c.npz's
    (tmp_path / "c.npz.mine.tmp").write_bytes(b"not a name minicnn gives")
    small_checkpoint(path, epoch=3)                       # the next save to the same path
    assert temporaries(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["c.npz", "c.npz.mine.tmp", "other.npz.0123456789ab.tmp"]
    assert mc.load(str(path), restore_rng=False)["epoch"] == 3


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    path = tmp_path / "c.npz"
    child, temporary = start_big_save(path)
    os.kill(child.pid, signal.SIGSTOP)                     # alive, mid-write, holding its lock
    try:
        assert remove_stale_temporaries(path) == []
        small_checkpoint(path, epoch=1)                    # another save to the same path meanwhile
        assert temporaries(tmp_path) == [temporary]
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert child.wait(timeout=120) == 0                    # its save completes and wins the rename
    assert temporaries(tmp_path) == []
    assert mc.load(str(path), restore_rng=False)["epoch"] == 2


def test_an_exception_inside_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    with atomic_write(path, "w") as f:
        json.dump({"error": 0.25}, f)
    with pytest.raises(ZeroDivisionError):
        with atomic_write(path, "w") as f:
            f.write('{"error": ')                          # half a document, then a crash
            1 / 0
    assert json.loads(path.read_text()) == {"error": 0.25}
    assert os.listdir(tmp_path) == ["metrics.json"]
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with atomic_write(path, "a"):
            pass


def test_pictures_weights_onnx_files_and_pages_go_through_atomic_write(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    for name in ("filters.png", "model.npz", "model.onnx", "filters.svg", "page.html"):
        (tmp_path / f"{name}.0123456789ab.tmp").write_bytes(b"left by a killed writer")
    visualize.conv1_filters(model, tmp_path / "filters.png")
    mc.explore(model, np.zeros((3, 8, 8), np.float32), tmp_path / "page.html")
    visualize.conv1_filters(model, tmp_path / "filters.svg")
    mc.weights.save_npz(model, tmp_path / "model")                 # np.savez's rule: .npz is added
    pytest.importorskip("onnx")
    mc.onnx.export(model, np.zeros((1, 3, 8, 8), np.float32), tmp_path / "model.onnx")
    assert sorted(os.listdir(tmp_path)) == ["filters.png", "filters.svg", "model.npz", "model.onnx", "page.html"]
    assert (tmp_path / "page.html").read_text().lower().startswith("<!doctype html>")
    assert (tmp_path / "filters.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "filters.svg").read_bytes()
    assert set(np.load(tmp_path / "model.npz")) == set(model.state_dict())
    assert isinstance(mc.onnx.load(tmp_path / "model.onnx"), nn.Module)
