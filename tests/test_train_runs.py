"""Runs you cannot lose: `python -m minicnn train --resume` after a real Ctrl-C (SIGINT) or kill -9
gives the numbers of a run that never stopped; an --out holding a run is refused unless --resume or
--overwrite; a lock (train.lock, flock) keeps a second process out of a folder being written, is
released however the run ends, and a kill -9 leaves none that blocks; evaluate refuses NaN weights
and a hostile record before building anything.

Every run here is a real `python -m minicnn` process on the digits (3 epochs: seconds each).
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from minicnn import cli
from minicnn.cli.train import LOCK_NAME, OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT, kill -9 and flock are POSIX")
EPOCHS = 3


def command(out, *options, epochs=EPOCHS):
    return [sys.executable, "-m", "minicnn", "train", "--dataset", "digits", "--epochs", str(epochs),
            "--out", str(out), *options]


def start(argv):
    return subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(argv, memory=None):
    """The finished process (returncode, stdout, stderr); memory: its address-space limit in bytes."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory, memory))) if memory else None
    return subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=600, preexec_fn=limit)


def wait_for(condition, child, what):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if condition():
            return
        if child.poll() is not None:
            break
        time.sleep(0.02)
    child.kill()
    _, err = child.communicate()
    pytest.fail(f"never saw {what} (exit status {child.returncode}): {err}")


def error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def numbers(out):
    """metrics.json without the times (which no two runs share)."""
    metrics = json.loads((out / "metrics.json").read_text())
    del metrics["train_seconds"], metrics["history"]["seconds"]
    return metrics


def weights(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files if name != "meta.json"}


def leftovers(out):
    """What a finished run must not leave: its lock file, temporaries."""
    return sorted(name for name in os.listdir(out) if name == LOCK_NAME or name.endswith(".tmp"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A run that never stopped."""
    out = tmp_path_factory.mktemp("straight") / "run"
    done = run(command(out))
    assert done.returncode == 0, done.stderr
    assert leftovers(out) == []      # the lock is released on a normal exit
    return out


# ------------------------------------------------------------------ --resume
def test_a_run_stopped_with_ctrl_c_and_resumed_gives_the_numbers_of_one_that_never_stopped(straight, tmp_path):
    out = tmp_path / "run"
    child = start(command(out))
    wait_for(lambda: (out / "checkpoint.npz").exists(), child, "the first epoch's checkpoint")
    child.send_signal(signal.SIGINT)                     # Ctrl-C, in the second epoch
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130 and error_line(err) == "error: interrupted"
    stopped_at = mc.load(str(out / "checkpoint.npz"), restore_rng=False)["epoch"]
    assert 1 <= stopped_at < EPOCHS
    assert f"--epochs {EPOCHS} --out {out} --resume" in err         # the note says how to go on
    assert not (out / "metrics.json").exists() and leftovers(out) == []   # Ctrl-C released the lock
    os.link(out / "checkpoint.npz", tmp_path / "stopped.npz")       # the inode the next save must not write

    done = run(command(out, "--resume"))
    assert done.returncode == 0, done.stderr
    assert f"resuming alexnet_small on digits" in done.stderr and f"after epoch {stopped_at} of {EPOCHS}" in done.stderr
    assert f"epoch {stopped_at}/{EPOCHS}" not in done.stderr      # the finished epochs are not trained again
    assert numbers(out) == numbers(straight)
    resumed, uninterrupted = weights(out / "checkpoint.npz"), weights(straight / "checkpoint.npz")
    assert resumed.keys() == uninterrupted.keys()
    assert all(np.array_equal(resumed[k], uninterrupted[k]) for k in resumed)
    # the checkpoint was replaced by a rename, never written over in place
    assert mc.load(str(tmp_path / "stopped.npz"), restore_rng=False)["epoch"] == stopped_at
    assert leftovers(out) == []


def test_a_run_killed_with_kill_9_resumes_and_its_lock_does_not_block(tmp_path):
    out = tmp_path / "run"
    child = start(command(out, epochs=2))
    wait_for(lambda: (out / "checkpoint.npz").exists(), child, "the first epoch's checkpoint")
    child.kill()                                                  # kill -9: nothing of the process runs
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert (out / LOCK_NAME).read_text().startswith(f"pid {child.pid}, started ")   # left behind ...
    done = run(command(out, "--resume", epochs=2))                  # ... and not in the way
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["history"]["epoch"] == [1, 2]
    assert leftovers(out) == []


def test_resume_refuses_what_cannot_be_continued(straight, tmp_path, capsys):
    def refused(*argv):
        assert cli.main(list(argv)) == 2
        return error_line(capsys.readouterr().err)

    assert "--resume continues the run in the folder --out names" in refused("train", "--resume")
    missing = tmp_path / "nothing" / "here"
    assert f"{missing} holds no checkpoint.npz to continue from" in refused(*command(missing, "--resume")[3:])
    assert not (tmp_path / "nothing").exists()           # the folders made for the run are removed again
    run_copy = tmp_path / "run"
    shutil.copytree(straight, run_copy)
    says = refused(*command(run_copy, "--resume", "--lr", "0.1")[3:])
    assert f"--resume continues the run in {run_copy} as it was started, with --lr 0.02 (this command has --lr 0.1)" \
        in says and says.endswith(f"resume it with: python -m minicnn train --dataset digits --epochs 3 "
                                  f"--out {run_copy} --resume")
    with pytest.raises(SystemExit) as e:
        cli.main(command(run_copy, "--resume", "--overwrite")[3:])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert leftovers(run_copy) == []                     # the lock is released on an error too


# ------------------------------------------------------------------ an --out that holds a run
def test_an_out_holding_a_run_is_refused_unless_resume_or_overwrite(straight, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    assert cli.main(command(out)[3:]) == 2
    says = error_line(capsys.readouterr().err)
    assert says.startswith(f"error: --out {out} holds another run (metrics.json, checkpoint.npz, ")
    assert "--resume" in says and "--overwrite" in says
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before and leftovers(out) == []

    (out / "notes.txt").write_text("mine")
    assert cli.main(command(out, "--overwrite", epochs=1)[3:]) == 0
    capsys.readouterr()
    assert json.loads((out / "metrics.json").read_text())["history"]["epoch"] == [1]   # the new run's
    assert mc.load(str(out / "checkpoint.npz"), restore_rng=False)["epoch"] == 1
    assert (out / "notes.txt").read_text() == "mine" and leftovers(out) == []   # only the run was replaced


def test_overwrite_leaves_the_run_alone_when_the_new_one_cannot_start(straight, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    assert cli.main(command(out, "--overwrite", "--batch-size", "5000")[3:]) == 2
    assert "use --batch-size 1438 or less" in error_line(capsys.readouterr().err)
    assert all((out / name).exists() for name in OUTPUTS) and leftovers(out) == []


def test_resuming_a_finished_run_writes_its_results_again_each_by_a_rename(straight, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    for name in OUTPUTS:
        os.link(out / name, tmp_path / f"old.{name}")
    assert cli.main(command(out, "--resume")[3:]) == 0
    assert "after epoch 3 of 3" in capsys.readouterr().err
    assert numbers(out) == numbers(straight)
    for name in ("metrics.json", "curves.png", "conv1_filters.png", "predictions.png"):
        assert not os.path.samefile(out / name, tmp_path / f"old.{name}"), name   # a new file renamed in
        assert (tmp_path / f"old.{name}").read_bytes() == (straight / name).read_bytes()   # the old one untouched
    assert leftovers(out) == []


# ------------------------------------------------------------------ the lock: one process per --out
def test_a_second_process_cannot_write_the_folder_a_run_is_writing(tmp_path):
    out = tmp_path / "run"
    first = start(command(out, epochs=5))             # long enough for three others to try
    wait_for(out.is_dir, first, "the run's folder")     # the second starts while the first one writes
    for options in ((), ("--overwrite",), ("--resume",)):
        second = run(command(out, *options))
        assert second.returncode == 2, second.stderr
        says = error_line(second.stderr)
        assert re.fullmatch(rf"error: --out {re.escape(str(out))} is being written by another 'python -m minicnn "
                            rf"train' \(pid {first.pid}, started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\); wait until it "
                            rf"has finished, or give another --out", says), says
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err                   # the first run went on untouched
    assert all((out / name).exists() for name in OUTPUTS) and leftovers(out) == []


# ------------------------------------------------------------------ evaluate: weights and records not to trust
def tampered(source, path, change):
    """A copy of the train checkpoint ``source`` at ``path`` with change(model, extra) applied."""
    state = mc.load(str(source), restore_rng=False)
    model = mc.models.build(state["architecture"])
    mc.load(str(source), model, restore_rng=False)
    extra = state["extra"]
    change(model, extra)
    mc.save(str(path), model, epoch=state["epoch"], extra=extra, class_names=state["class_names"])
    return path


def test_evaluate_refuses_nan_weights_with_status_2_and_fails_on_overflowing_ones_with_status_1(straight, tmp_path):
    def fill(value):
        def change(model, extra):
            for p in model.parameters():
                p.data[...] = value
        return change

    nan = run([sys.executable, "-m", "minicnn", "evaluate",
               str(tampered(straight / "checkpoint.npz", tmp_path / "nan.npz", fill(np.nan)))])
    assert nan.returncode == 2 and "model.conv1.weight holds NaN (800 of 800 values)" in error_line(nan.stderr)
    assert "error" not in nan.stdout and "top-1" not in nan.stdout
    huge = run([sys.executable, "-m", "minicnn", "evaluate",
                str(tampered(straight / "checkpoint.npz", tmp_path / "huge.npz", fill(1e38)))])
    assert huge.returncode == 1
    assert "they first appear in the output of layer 'conv1'" in error_line(huge.stderr) and "top-1" not in huge.stdout


@pytest.mark.parametrize("entry, value, says", [
    ("crop", 100000, "its recipe crops 100000 pixels from images of side 28"),
    ("resize", 100000, "its recipe resizes to 100000 with photos=False, but train prepares digits for alexnet_small "
                       "with resize 28"),
    ("crop", 20, "it records the architecture"),
    ("channels", 100000, "it records 100000 image channels, but conv1's weights take 1"),
    ("classes", [str(i) for i in range(100000)], "it records 100000 classes, but fc8's weights give 10"),
])
def test_a_hostile_record_is_refused_before_anything_is_built(straight, tmp_path, entry, value, says):
    def change(model, extra):
        (extra["recipe"] if entry in ("crop", "resize") else extra)[entry] = value

    path = tampered(straight / "checkpoint.npz", tmp_path / "hostile.npz", change)
    for argv in (["evaluate", str(path)], ["export", str(path), str(tmp_path / "model.onnx")]):
        done = run([sys.executable, "-m", "minicnn", *argv], memory=4 << 30)   # terabytes would fail, not swap
        assert done.returncode == 2, done.stderr
        assert says in error_line(done.stderr) and "nothing is built from it" in done.stderr
    assert not (tmp_path / "model.onnx").exists()
