"""Beyond one device (minicnn/distributed/): data parallel over MPI and NCCL, the paper's towers.

Under ``mpiexec -n 2`` (tests/distributed_worker.py runs the ranks; the launches are few and
the model small, a float64 alexnet_small on 16x16 crops, so CI pays seconds):
- data parallel: a 2-rank fit equals the 1-rank fit on the same global batches -- dropout,
  shuffling and random crops on, rank 1 starting from other weights -- its parameters to
  1e-10, with an even (4 + 4) and an uneven (3 + 2) split; metrics and a sharded evaluation
  are the whole set's on both ranks;
- the NCCL path, on a GPU made of NumPy with NCCL played by MPI on the arrays' addresses:
  the same numbers, and the gradient all-reduce copies nothing to the host;
- the towers (TowerParallel): forward, backward and fit equal one process computing both
  towers, on the CPU, through the stand-in NCCL, and through MPI as two processes sharing
  one GPU do;
- a rank that raises, hangs or dies ends the job with a clear message instead of a hang.
Without MPI: the DataLoader's shards, the one-process World, and the refusals.
Marked gpu: the same data-parallel and tower runs on real GPUs (NCCL needs one per rank).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import minicnn as mc
from minicnn import data as D
from minicnn import distributed, naive, nn

import distributed_worker as W

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
ROOT = os.path.dirname(os.path.dirname(WORKER))


def mpiexec_command():
    """[mpiexec, options...] for 2 ranks, or a skip saying what is missing."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'minicnn[distributed]')")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'minicnn[distributed]' brings Open MPI's)")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    # Open MPI: 2 ranks may exceed the cores it counts (CI has 2, shared with other work)
    return [mpiexec] + (["--oversubscribe"] if "Open MPI" in version or "prte" in version.lower() else []) + ["-n", "2"]


def run_ranks(out, *scenarios, timeout=300):
    return run_two([WORKER, str(out), *scenarios], timeout=timeout)


def run_two(arguments, timeout=300, cwd=None):
    """``mpiexec -n 2 python ARGUMENTS``: (the finished process, seconds it took)."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",  # Open MPI as root (CI)
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",   # one thread per rank: two ranks share two cores
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    start = time.monotonic()
    done = subprocess.run(mpiexec_command() + [sys.executable, *arguments], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


def has_host_build():
    try:
        import minicnn._host  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One mpiexec launch for every scenario that should succeed; each rank's results by name."""
    out = tmp_path_factory.mktemp("ranks")
    scenarios = ["data_parallel", "towers"]
    if has_host_build():         # the NumPy GPU runs the host build of the kernels
        scenarios += ["data_parallel_nccl", "towers_nccl", "towers_shared_gpu"]
    done, _ = run_ranks(out, *scenarios)
    if done.returncode != 0:
        pytest.fail(f"mpiexec -n 2 {' '.join(scenarios)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def results(scenario):
        if scenario not in scenarios:
            pytest.skip("minicnn._host is not built (pip install -e .): the NumPy GPU runs it")
        return [dict(np.load(out / f"{scenario}_rank{r}.npz")) for r in (0, 1)]
    return results


@pytest.fixture(scope="module")
def one_process():
    return W.run_data_parallel(distributed.World(), None)


@pytest.fixture(scope="module")
def towers_in_one_process():
    return W.towers_in_one_process()


# --------------------------------------------------------------------------- data parallel
def assert_same_training(ranks, one, rtol):
    rank0, rank1 = ranks
    assert set(rank0) >= set(one)
    for key, expected in one.items():
        np.testing.assert_array_equal(rank1[key], rank0[key], err_msg=f"the ranks disagree on {key}")
        np.testing.assert_allclose(rank0[key], expected, rtol=rtol, atol=rtol, err_msg=key)


def test_two_ranks_train_as_one_process_does(ranks, one_process):
    # parameters after 6 steps (global batch 8 = 4 + 4) and 4 steps (5 = 3 + 2), to 1e-10;
    # the epoch losses and error rates, and the sharded evaluation (4 + 4 + 1 images split)
    assert_same_training(ranks("data_parallel"), one_process, rtol=1e-10)


def test_two_ranks_through_nccl_on_a_numpy_gpu(ranks, one_process):
    rank0, rank1 = ranks("data_parallel_nccl")
    assert_same_training([rank0, rank1], one_process, rtol=1e-10)
    assert rank0["transfers_in_allreduce"] == 0, "the gradient all-reduce waited for the GPU"
    assert rank0["device_grads"], "the gradients left the GPU"


# --------------------------------------------------------------------------- the towers
@pytest.mark.parametrize("scenario", ["towers", "towers_nccl", "towers_shared_gpu"])
def test_two_towers_on_two_ranks_compute_what_one_process_does(ranks, towers_in_one_process, scenario):
    # every rank returns the whole logits and keeps tower r's parameters: block r of the
    # output channels / features of each layer, so its gradients are block r of the full ones
    for rank, results in enumerate(ranks(scenario)):
        for key, expected in towers_in_one_process.items():
            if key.startswith(("grad.", "param.")):
                block = expected.shape[0] // 2
                expected = expected[rank * block:(rank + 1) * block]
            np.testing.assert_allclose(results[key], expected, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {key}")


# --------------------------------------------------------------------------- failures end the job
@pytest.mark.parametrize("how, message", [
    ("raise", "ValueError: rank 1 failed on purpose"),
    ("hang", "numbers waited more than 3 s for the other ranks; one of them has stopped or is stuck"),
    ("die", ""),
])
def test_a_rank_that_fails_stops_every_rank(tmp_path, how, message):
    done, seconds = run_ranks(tmp_path, how, timeout=120)
    assert done.returncode != 0
    assert message in done.stderr
    if how != "die":
        assert "aborting every rank" in done.stderr
    assert "rank 0 finished training" not in done.stdout, "rank 0 went on alone"
    assert seconds < 60, f"the job took {seconds:.0f} s to stop"


# --------------------------------------------------------------------------- the CLI, unchanged
def test_the_cli_trains_on_two_ranks_and_only_rank_0_writes(tmp_path):
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (the 'train' extra)")
    pytest.importorskip("matplotlib", reason="the pictures need matplotlib (the 'train' extra)")
    # no --out: one runs/<timestamp> folder (rank 0 names it and writes; the others write nothing)
    done, _ = run_two(["-m", "minicnn", "train", "--dataset", "digits", "--epochs", "1", "--batch-size", "128",
                       "--device", "cpu"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (out,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "checkpoint.npz", "curves.png"}
    assert json.loads((out / "metrics.json").read_text())["ranks"] == 2
    assert done.stdout.count("test top-1 error") == 1 and done.stderr.count("training alexnet_small") == 1


def test_the_scaling_benchmark_runs(tmp_path):
    mpiexec_command()                 # skips, saying why, without MPI
    out = tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "scaling.py"), "--rounds", "1", "--steps",
                           "1", "--warmup", "0", "--batch", "4", "--no-bare-allreduce", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert [run["ranks"] for run in result["runs"]] == [1, 2] and set(result["summary"]) == {"1", "2"}
    assert result["runs"][1]["batch_per_rank"] == 2 and result["runs"][1]["allreduce_s"] > 0


# --------------------------------------------------------------------------- on real GPUs
@pytest.mark.gpu
@pytest.mark.parametrize("scenario", ["data_parallel_gpu", "towers_gpu"])
def test_on_gpus(tmp_path, one_process, towers_in_one_process, scenario):
    """NCCL where each rank has its own GPU; with one GPU, the two ranks share it through MPI."""
    done, _ = run_ranks(tmp_path, scenario)
    assert done.returncode == 0, done.stdout + done.stderr
    results = [dict(np.load(tmp_path / f"{scenario}_rank{r}.npz")) for r in (0, 1)]
    if scenario == "data_parallel_gpu":   # cuBLAS sums in another order than the CPU
        for key, expected in one_process.items():
            np.testing.assert_allclose(results[0][key], expected, rtol=1e-8, atol=1e-8, err_msg=key)
            np.testing.assert_array_equal(results[1][key], results[0][key])
    else:
        for rank, result in enumerate(results):
            for key, expected in towers_in_one_process.items():
                if key.startswith(("grad.", "param.")):
                    expected = expected[rank * expected.shape[0] // 2:(rank + 1) * expected.shape[0] // 2]
                np.testing.assert_allclose(result[key], expected, rtol=1e-8, atol=1e-8, err_msg=key)


# --------------------------------------------------------------------------- without MPI
def toy(count=23):
    rng = np.random.default_rng(0)
    return D.ArrayDataset(rng.standard_normal((count, 1, 6, 6)).astype(np.float32), np.arange(count) % 4)


@pytest.mark.parametrize("replicas, batch_size, drop_last", [(2, 8, True), (2, 5, False), (3, 4, False), (3, 3, True)])
def test_the_shards_of_a_batch_are_its_slices(replicas, batch_size, drop_last):
    # the same shuffle and the same random crop of each image on every rank, however many
    whole = D.DataLoader(toy(), batch_size, shuffle=True, seed=4, drop_last=drop_last, transform=D.RandomCrop(4))
    shards = [D.DataLoader(toy(), batch_size, shuffle=True, seed=4, drop_last=drop_last, transform=D.RandomCrop(4),
                           num_replicas=replicas, rank=r, prefetch=0) for r in range(replicas)]
    for loader in [whole] + shards:
        loader.set_epoch(2)
    parts = [list(shard) for shard in shards]
    for b, (images, labels) in enumerate(whole):
        pieces = [(shard.first_sample(b), part[b]) for shard, part in zip(shards, parts) if b < len(part)]
        # contiguous slices, as even as np.array_split makes them
        sizes = [len(piece[1][1]) for piece in pieces]
        assert sizes == [len(a) for a in np.array_split(labels, replicas) if len(a)]
        for first, (x, y) in pieces:
            np.testing.assert_array_equal(x, images[first:first + len(y)])
            np.testing.assert_array_equal(y, labels[first:first + len(y)])
        assert sum(sizes) == len(labels)
    assert max(len(shard) for shard in shards) == len(whole)


def test_a_rank_without_images_in_the_last_batch_has_one_batch_less():
    shards = [D.DataLoader(toy(9), 4, num_replicas=2, rank=r) for r in (0, 1)]   # batches of 4, 4 and 1
    assert [len(s) for s in shards] == [3, 2] and [len(list(s)) for s in shards] == [3, 2]
    assert [shards[1].first_sample(b) for b in (0, 1)] == [2, 2]


def test_sharding_arguments_are_checked():
    with pytest.raises(ValueError, match="global batch"):
        D.DataLoader(toy(), 1, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        D.DataLoader(toy(), 4, num_replicas=2, rank=2)


def test_outside_mpiexec_init_gives_one_process(monkeypatch):
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed.job, "_world", distributed.World())
    world = distributed.init()
    assert (world.rank, world.size, world.is_main, world.mpi) == (0, 1, True, None)
    assert distributed.world() is world
    x = np.arange(6.0)
    assert world.allreduce_sum_(x) is x and np.array_equal(x, np.arange(6.0))
    assert world.allgather(x).shape == (1, 6) and np.array_equal(world.reduce_scatter(x[None]), x)
    assert world.broadcast_object("runs/x") == "runs/x"


def two_rank_world(monkeypatch, rank=0):
    """A World that says it has two ranks; fine for what is refused before any message is sent."""
    world = distributed.World(rank=rank, size=2)
    monkeypatch.setattr(distributed.job, "_world", world)
    return world


def test_fit_on_several_ranks_needs_a_sharded_loader(monkeypatch):
    two_rank_world(monkeypatch)
    model = W.small_model()
    optimizer = mc.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not sharded"):
        mc.fit(model, D.DataLoader(toy(), 4), 1, optimizer, verbose=False)
    with pytest.raises(ValueError, match="sharded for 3 ranks but the job has 2"):
        mc.fit(model, D.DataLoader(toy(), 4, num_replicas=3, rank=0), 1, optimizer, verbose=False)


def test_towers_refuse_what_they_cannot_split(monkeypatch):
    world = two_rank_world(monkeypatch, rank=1)
    towers = distributed.TowerParallel(W.small_model(), world)
    assert towers.layers.conv1.weight.shape == (16, 1, 5, 5) and towers.layers.conv2.groups == 1
    assert towers.layers.fc8.weight.shape == (5, 512) and towers.gather_before[:9] == [False] * 8 + [True]
    optimizer = mc.optim.SGD(towers.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="does not write checkpoints of a TowerParallel"):
        mc.fit(towers, D.DataLoader(toy(), 4), 1, optimizer, checkpoint="x.npz")
    with pytest.raises(ValueError, match="trains on an unsharded loader"):
        mc.fit(towers, D.DataLoader(toy(), 4, num_replicas=2, rank=1), 1, optimizer)
    three_groups = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=3))
    with pytest.raises(ValueError, match="groups=3"):
        distributed.TowerParallel(three_groups, world)
    with pytest.raises(ValueError, match="does not know how to split"):
        distributed.TowerParallel(nn.Sequential(nn.Conv2d(3, 6, 3), nn.Sigmoid()), world)
    with pytest.raises(TypeError, match="takes a Sequential"):
        distributed.TowerParallel(nn.Conv2d(3, 6, 3), world)


def test_channel_dropout_of_a_slice_of_the_batch_is_the_slice_of_the_batch_mask():
    x = np.random.default_rng(2).standard_normal((5, 6, 3, 3)) + 4.0
    whole = mc.functional.dropout2d(mc.Tensor(x), 0.5, seed=11).numpy()
    with mc.random.first_sample(2):      # a rank holding images 2..4 of the global batch
        part = mc.functional.dropout2d(mc.Tensor(x[2:]), 0.5, seed=11).numpy()
    np.testing.assert_array_equal(part, whole[2:])
    np.testing.assert_allclose(part, naive.dropout2d(x[2:], 0.5, 11, offset=2 * 6), rtol=1e-15)


def test_gradient_buckets_keep_one_dtype_and_about_the_size_asked():
    params = [mc.Parameter(np.zeros(n, dtype=t)) for n, t in
              [(100, np.float32), (100, np.float32), (300, np.float32), (10, np.float64), (10, np.float32)]]
    sizes = [[p.data.size for p in bucket] for bucket in distributed.data_parallel._buckets(params, bucket_bytes=1000)]
    assert sizes == [[100, 100], [300], [10], [10]]
