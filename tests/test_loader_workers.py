"""DataLoader(num_workers=N): the same batches as without workers, errors named in the main
process, and no process left behind (after close, garbage collection, Ctrl-C, an error, kill -9).

Worker processes are real here (multiprocessing with the platform's start method), and so are
the failures: a truncated JPEG, a worker killed with SIGKILL, SIGINT sent to the main process,
the main process killed with SIGKILL.
"""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import minicnn.data as D

from test_data import Broken, photo_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def alive(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see the worker processes")


def paper_augmentation(dataset):
    """The paper's training augmentation, small: random crops, flips, PCA colour noise."""
    return D.Compose([D.RandomCrop(24), D.RandomHorizontalFlip(), D.fit_pca_lighting(dataset, std=0.1),
                      D.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])


def epochs(loader, count):
    return [[(x.copy(), y.copy()) for x, y in loader] for _ in range(count)]


@needs_proc
def test_workers_give_the_batches_of_no_workers_bit_for_bit(tmp_path):
    root = photo_folder(tmp_path)
    folder = D.image_folder(str(root), image_size=28)               # JPEG and PNG decoding in the workers
    transform = paper_augmentation(folder)
    settings = dict(batch_size=4, shuffle=True, seed=7, transform=transform)
    expected = epochs(D.DataLoader(folder, prefetch=0, **settings), 3)
    for num_workers in (1, 2):
        loader = D.DataLoader(folder, num_workers=num_workers, **settings)
        got = epochs(loader, 3)
        assert len(loader.worker_pids) == num_workers                # started once, alive across epochs
        pids = loader.worker_pids
        for epoch, (ours, theirs) in enumerate(zip(got, expected)):
            assert len(ours) == len(theirs) == 2                     # a short last batch too (6 images)
            for (x, y), (x0, y0) in zip(ours, theirs):
                assert x.dtype == np.float32 and x.shape == x0.shape
                np.testing.assert_array_equal(x, x0, err_msg=f"{num_workers} workers, epoch {epoch}")
                np.testing.assert_array_equal(y, y0)
        for i, _ in enumerate(loader):                                # leave an epoch early ...
            if i == 0:
                break
        again = epochs(loader, 1)[0]                                  # ... the next one is whole and right
        reference = epochs(D.DataLoader(folder, prefetch=0, **settings), 5)[4]
        for (x, _), (x0, _) in zip(again, reference):
            np.testing.assert_array_equal(x, x0)
        assert loader.worker_pids == pids
        loader.close()
        assert loader.worker_pids == [] and wait_gone(pids) == []


@needs_proc
def test_a_bad_file_in_a_worker_is_raised_here_naming_it(tmp_path):
    root = photo_folder(tmp_path)
    good = root / "animals" / "chelsea.jpg"
    bad = root / "animals" / "broken.jpg"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])   # cut off mid-stream
    loader = D.DataLoader(D.image_folder(str(root), image_size=16), batch_size=2, num_workers=2)
    with pytest.raises(ValueError, match=r"(?s)cannot read image .*broken\.jpg.*sample \d+ \(file .*broken\.jpg\).*"
                                         r"DataLoader worker \d \(pid \d+\)") as caught:
        list(loader)
    assert "Traceback" in str(caught.value)                          # the worker's own traceback comes along
    assert loader.worker_pids == []                                  # the error stopped the workers


@needs_proc
def test_an_exception_that_cannot_be_rebuilt_still_names_the_sample():
    class Unusual(Exception):
        def __init__(self, code, detail):
            super().__init__(f"code {code}: {detail}")

    class Strange(Broken):
        def __getitem__(self, i):
            if i == 3:
                raise Unusual(42, "the third image")
            return super().__getitem__(i)

    with pytest.raises(RuntimeError, match=r"(?s)Unusual: code 42: the third image.*sample 3.*DataLoader worker"):
        list(D.DataLoader(Strange(), 2, num_workers=1))


@needs_proc
def test_a_worker_killed_is_an_error_not_a_hang():
    loader = D.DataLoader(Broken(), 2, num_workers=2)
    with pytest.raises(ValueError):                                     # image 5: starts the workers
        list(loader)
    slow = D.DataLoader(D.ArrayDataset(np.zeros((40, 1, 2, 2), np.float32), np.zeros(40, np.int64)), 2,
                        num_workers=2, transform=lambda image, rng: (time.sleep(0.2), image)[1])
    batches = iter(slow)
    next(batches)
    victim = slow.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=rf"DataLoader worker 0 \(pid {victim}\) exited unexpectedly"):
        list(batches)
    assert slow.worker_pids == []


@needs_proc
def test_workers_go_when_the_loader_goes():
    loader = D.DataLoader(D.ArrayDataset(np.zeros((8, 1, 2, 2), np.float32), np.zeros(8, np.int64)), 2,
                          num_workers=2)
    list(loader)
    pids = loader.worker_pids
    assert len(pids) == 2 and all(alive(p) for p in pids)
    del loader
    gc.collect()
    assert wait_gone(pids) == []


SCRIPT = """
import os, signal, sys, threading, time
import numpy as np
import minicnn.data as D

def slow(image, rng):
    time.sleep(0.05)
    return image

loader = D.DataLoader(D.ArrayDataset(np.zeros((400, 1, 2, 2), np.float32), np.zeros(400, np.int64)), 2,
                      num_workers=2, transform=slow)
batches = iter(loader)
next(batches)
print(" ".join(str(p) for p in loader.worker_pids), flush=True)
how = sys.argv[1]
if how == "ctrl-c":
    # what Ctrl-C in a terminal does: SIGINT to every process of the job, while the main
    # process waits for a batch
    threading.Timer(0.3, os.killpg, (0, signal.SIGINT)).start()
    for _ in batches:
        pass
elif how == "kill -9":
    os.kill(os.getpid(), signal.SIGKILL)
elif how == "exit":
    sys.exit(0)                               # in the middle of an epoch, the loader still referenced
"""


@needs_proc
@pytest.mark.parametrize("how", ["ctrl-c", "exit", "kill -9"])
def test_no_worker_outlives_the_main_process(tmp_path, how):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120,
                         env=env, cwd=str(tmp_path), start_new_session=True)      # its own process group
    pids = [int(p) for p in run.stdout.split()]
    assert len(pids) == 2, run.stderr
    if how == "ctrl-c":
        assert run.returncode != 0 and run.stderr.count("KeyboardInterrupt") == 1, run.stderr   # workers ignore it
        assert "in _from_workers" in run.stderr             # it came while the main process waited for a batch
    elif how == "exit":
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode == -signal.SIGKILL
    assert wait_gone(pids) == [], f"workers {pids} still running after the main process ended ({how})"


def test_num_workers_must_be_a_count():
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
            D.DataLoader(Broken(), 2, num_workers=bad)
