"""What tests/test_distributed.py runs under ``mpiexec -n 2``, and the one-process runs it
compares with (imported by the test itself).

    mpiexec -n 2 python tests/distributed_worker.py OUTDIR SCENARIO...

Each scenario writes OUTDIR/<scenario>_rank<r>.npz. Scenarios:

  data_parallel         fit of a float64 alexnet_small (dropout, shuffle, random crops) on a
                        loader sharded over the ranks; rank 1 starts from other weights
                        (rank 0's are broadcast); 6 steps of a global batch of 8 (4 + 4), then
                        4 steps of one of 5 (3 + 2)
  data_parallel_nccl    the same on a GPU made of NumPy (tests/test_no_sync.py) with NCCL
                        played by MPI on the arrays' addresses (MPIBackedNccl); also: one
                        gradient all-reduce copies nothing to the host
  towers                TowerParallel(alexnet_small): forward, backward, then fit, on the CPU
  towers_nccl           the same on the NumPy GPU with the stand-in NCCL
  towers_shared_gpu     the same on the NumPy GPU through MPI (two processes sharing one GPU:
                        NCCL refuses that, device arrays go through the host)
  data_parallel_gpu     data_parallel on a real GPU (CuPy): NCCL where each rank has its own
                        GPU, MPI through the host where the two share one
  towers_gpu            towers on a real GPU, likewise
  raise                 rank 1 raises in the middle of training (the test expects an abort)
  hang                  rank 1 sleeps instead of training; rank 0's collective times out
  die                   rank 1 exits (os._exit) in the middle of training
"""

import copy
import ctypes
import os
import sys
import time
import types
from collections import OrderedDict

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]      # tests/ (test_no_sync), and this checkout's minicnn

import minicnn as mc                                                     # noqa: E402
import minicnn.functional as F                                           # noqa: E402
from minicnn import data as D                                            # noqa: E402
from minicnn import distributed, nn                                      # noqa: E402
from minicnn import random as mc_random                                  # noqa: E402

SIDE, CROP, CLASSES = 18, 16, 10


def dataset(count=24, seed=5):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 1, SIDE, SIDE)).astype(np.float32)
    return D.ArrayDataset(images, rng.integers(0, CLASSES, count))


def small_model(seed=0):
    mc.manual_seed(seed)
    return mc.models.alexnet_small(num_classes=CLASSES, input_size=CROP).double()


# --------------------------------------------------------------------------- data parallel
def train(world, batch_size, device="cpu", init_seed=0, epochs=2):
    """A few SGD steps of alexnet_small with every source of randomness on; returns
    (state_dict, history, sharded evaluation)."""
    model = small_model(init_seed).to(device)
    mc.manual_seed(1)                     # the dropout seeds: the same on every rank
    optimizer = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = D.DataLoader(dataset(), batch_size, shuffle=True, seed=3, drop_last=True, transform=D.RandomCrop(CROP),
                          prefetch=0, num_replicas=world.size, rank=world.rank)
    history = mc.fit(model, loader, epochs, optimizer, verbose=False)
    test = D.DataLoader(dataset(9, seed=6), 4, transform=D.CenterCrop(CROP), num_replicas=world.size, rank=world.rank)
    return model.state_dict(), history, mc.evaluate(model, test)


def run_data_parallel(world, out, device="cpu"):
    results = {}
    for batch_size, epochs in ((8, 2), (5, 1)):
        state, history, evaluation = train(world, batch_size, device, init_seed=world.rank, epochs=epochs)
        results.update({f"b{batch_size}.{k}": v for k, v in state.items()})
        results[f"b{batch_size}.history"] = np.array([history.train_loss, history.train_top1], dtype=np.float64)
        results[f"b{batch_size}.evaluation"] = np.array(evaluation, dtype=np.float64)
    return results


# --------------------------------------------------------------------------- a GPU made of NumPy, NCCL made of MPI
class MPIBackedNccl:
    """cupy.cuda.nccl's stand-in: each call reads and writes the memory at the addresses it is
    given, for the counts and types it is given, exactly as NCCL's C functions would, and
    moves the numbers with MPI. So a wrong pointer, count, type or root shows as wrong numbers."""

    NCCL_SUM, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 7, 8
    calls = []

    @staticmethod
    def get_unique_id():
        return b"stand-in unique id"

    @staticmethod
    def get_version():
        return 22800

    class NcclCommunicator:
        def __init__(self, ranks, unique_id, rank):
            from mpi4py import MPI
            assert unique_id == b"stand-in unique id" and ranks == MPI.COMM_WORLD.size and rank == MPI.COMM_WORLD.rank
            self.comm, self.size = MPI.COMM_WORLD, ranks

        @staticmethod
        def memory(pointer, count, datatype):
            ctype = {MPIBackedNccl.NCCL_FLOAT32: ctypes.c_float, MPIBackedNccl.NCCL_FLOAT64: ctypes.c_double}[datatype]
            return np.ctypeslib.as_array((ctype * count).from_address(pointer))

        def allReduce(self, send, recv, count, datatype, op, stream):
            assert op == MPIBackedNccl.NCCL_SUM and stream == 0
            MPIBackedNccl.calls.append("allReduce")
            self.comm.Allreduce(self.memory(send, count, datatype).copy(), self.memory(recv, count, datatype))

        def bcast(self, buffer, count, datatype, root, stream):
            MPIBackedNccl.calls.append("bcast")
            self.comm.Bcast(self.memory(buffer, count, datatype), root=root)

        def allGather(self, send, recv, count, datatype, stream):
            MPIBackedNccl.calls.append("allGather")
            self.comm.Allgather(self.memory(send, count, datatype).copy(), self.memory(recv, count * self.size, datatype))

        def reduceScatter(self, send, recv, count, datatype, op, stream):
            assert op == MPIBackedNccl.NCCL_SUM
            MPIBackedNccl.calls.append("reduceScatter")
            self.comm.Reduce_scatter_block(self.memory(send, count * self.size, datatype).copy(),
                                           self.memory(recv, count, datatype))


def install_numpy_gpu():
    """test_no_sync's fake GPU (DeviceArray: NumPy that records every copy to the host; the
    host build of the kernels behind the RawKernel loader), two "GPUs" seen, NCCL stood in for."""
    from minicnn import device as _device
    from minicnn.backends import cuda, kernels
    from test_no_sync import DeviceArray, HostRawModule, fake_cupy

    fake = fake_cupy()
    fake.cuda.runtime.getDeviceCount = lambda: 2
    fake.cuda.Device = lambda index: types.SimpleNamespace(use=lambda: None)
    loader = object.__new__(cuda.RawKernelLoader)
    loader.cp = loader.xp = fake
    loader.module, loader.functions = HostRawModule(), {}
    _device._cupy = lambda: fake
    _device.cuda_available = lambda: True
    _device._on_cpu = lambda a: isinstance(a, (np.ndarray, np.generic)) and not isinstance(a, DeviceArray)
    cuda._backends = {"rawkernel": kernels.KernelBackend(loader, "cuda")}
    mc.backends._cuda_loader = "rawkernel"
    distributed.communicators.nccl_module = lambda: MPIBackedNccl
    distributed.NCCLCommunicator.pointer = staticmethod(lambda a: a.ctypes.data)
    return DeviceArray


def run_data_parallel_nccl(out):
    DeviceArray = install_numpy_gpu()
    world = distributed.init("cuda", timeout=60)
    assert world.nccl is not None, world
    results = run_data_parallel(world, out, device="cuda")
    assert {"allReduce", "bcast"} <= set(MPIBackedNccl.calls), MPIBackedNccl.calls
    # one step's gradient all-reduce queues on the GPU and copies nothing to the host
    model = small_model().to("cuda")
    images, labels = tower_batch(4)
    F.cross_entropy(model(mc.Tensor(images).to("cuda")), labels).backward()
    DeviceArray.transfers = []
    distributed.allreduce_gradients(model.parameters(), 4, world)
    results["transfers_in_allreduce"] = np.array(len(DeviceArray.transfers))
    results["device_grads"] = np.array(all(isinstance(p.grad, DeviceArray) for p in model.parameters()))
    return results


# --------------------------------------------------------------------------- the towers
def tower_batch(count=6):
    images, labels = D.stack(dataset(count, seed=8))
    return images[:, :, :CROP, :CROP].astype(np.float64), labels


def run_towers(world, device="cpu"):
    """Rank r's tower: logits, loss gradients of its parameters, then parameters after fit."""
    model = distributed.TowerParallel(small_model(), world).to(device)
    images, labels = tower_batch()
    mc.manual_seed(1)
    logits = model(mc.Tensor(images).to(device))
    F.cross_entropy(logits, labels).backward()
    results = {"logits": logits.numpy()}
    results.update({f"grad.{name}": mc.device.to_numpy(p.grad) for name, p in model.layers.named_parameters()})
    optimizer = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = D.DataLoader(dataset(), 8, shuffle=True, seed=3, drop_last=True, transform=D.RandomCrop(CROP), prefetch=0)
    mc.manual_seed(2)
    history = mc.fit(model, loader, 1, optimizer, verbose=False)
    results.update({f"param.{k}": v for k, v in model.layers.state_dict().items()})
    results["history"] = np.array([history.train_loss, history.train_top1], dtype=np.float64)
    return results


class TowerwiseLRN(nn.Module):
    """The paper's LRN within each tower: on each half of the channels separately."""

    def __init__(self, lrn):
        super().__init__()
        self.lrn = lrn

    def forward(self, x):
        half = x.shape[1] // 2
        return mc.cat([self.lrn(x[:, :half]), self.lrn(x[:, half:])], axis=1)


class TowerwiseDropout(nn.Module):
    """One seed, each tower's half numbered from tower * 2^40 (TowerParallel's rule)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        seed, half = mc_random.next_seed(), x.shape[1] // 2
        halves = [x[:, :half], x[:, half:]]
        return mc.cat([F.dropout(h, self.p, seed=seed, offset=t * 2**40) for t, h in enumerate(halves)], axis=1)


def towers_in_one_process():
    """What the two ranks compute together, in one process: the whole model with the towers'
    LRN and dropout; its logits, gradients and parameters after the same fit (full shapes)."""
    layers = []
    for name, layer in small_model().named_children():
        if isinstance(layer, nn.LocalResponseNorm):
            layer = TowerwiseLRN(layer)
        elif isinstance(layer, nn.Dropout):
            layer = TowerwiseDropout(layer.p)
        layers.append((name, layer))
    model = nn.Sequential(OrderedDict(layers))
    images, labels = tower_batch()
    mc.manual_seed(1)
    logits = model(mc.Tensor(images))
    F.cross_entropy(logits, labels).backward()
    results = {"logits": logits.numpy()}
    results.update({f"grad.{name}": p.grad.copy() for name, p in model.named_parameters()})
    optimizer = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = D.DataLoader(dataset(), 8, shuffle=True, seed=3, drop_last=True, transform=D.RandomCrop(CROP), prefetch=0)
    mc.manual_seed(2)
    history = mc.fit(model, loader, 1, optimizer, verbose=False)
    results.update({f"param.{k}": v for k, v in model.state_dict().items()})
    results["history"] = np.array([history.train_loss, history.train_top1], dtype=np.float64)
    return results


# --------------------------------------------------------------------------- failures
def run_failure(world, how):
    """Rank 1 fails (raises, or hangs) in the second step; rank 0 trains on."""
    model = small_model()
    optimizer = mc.optim.SGD(model.parameters(), lr=0.05)
    loader = D.DataLoader(dataset(), 8, prefetch=0, transform=D.RandomCrop(CROP), num_replicas=world.size,
                          rank=world.rank)

    def loss_fn(logits, labels, calls=[]):
        calls.append(1)
        if world.rank == 1 and len(calls) == 2:
            if how == "raise":
                raise ValueError("rank 1 failed on purpose")
            if how == "die":
                os._exit(3)
            time.sleep(120)
        return F.cross_entropy(logits, labels)

    mc.fit(model, loader, 1, optimizer, loss_fn=loss_fn, verbose=False)
    print(f"rank {world.rank} finished training", flush=True)


def main(out, scenarios):
    for scenario in scenarios:
        if scenario in ("raise", "hang", "die"):
            run_failure(distributed.init("cpu", timeout=3 if scenario == "hang" else 60), scenario)
            continue
        if scenario == "data_parallel":
            results = run_data_parallel(distributed.init("cpu", timeout=60), out)
        elif scenario == "towers":
            results = run_towers(distributed.init("cpu", timeout=60))
        elif scenario == "data_parallel_nccl":
            results = run_data_parallel_nccl(out)
        elif scenario == "towers_nccl":
            install_numpy_gpu()
            results = run_towers(distributed.init("cuda", timeout=60), "cuda")
            assert {"allGather", "reduceScatter"} <= set(MPIBackedNccl.calls), MPIBackedNccl.calls
        elif scenario == "towers_shared_gpu":
            install_numpy_gpu()
            world = distributed.init("cuda", timeout=60, use_nccl=False)
            assert world.nccl is None
            results = run_towers(world, "cuda")
        elif scenario == "data_parallel_gpu":
            results = run_data_parallel(distributed.init("cuda", timeout=120), out, device="cuda")
        elif scenario == "towers_gpu":
            results = run_towers(distributed.init("cuda", timeout=120), "cuda")
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        np.savez(os.path.join(out, f"{scenario}_rank{distributed.world().rank}.npz"), **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
