"""Beyond one device: data-parallel training over MPI (CPU) or NCCL (GPU), and the paper's two towers.

Data parallel -- every rank holds the whole model and a slice of each batch:

    mpiexec -n 2 python -m minicnn train ...            # the CLI, unchanged

    world = mc.distributed.init(device)                 # rank, size, local_rank; this rank's GPU
    loader = mc.data.DataLoader(train, 64, shuffle=True, seed=0, drop_last=True,
                                num_replicas=world.size, rank=world.rank)   # 64: the global batch
    mc.fit(model, loader, epochs, optimizer)

fit then (1) broadcasts rank 0's parameters, (2) runs the forward pass on the rank's
slice with dropout numbering the slice's elements from its first sample in the global
batch (mc.random.first_sample), (3) after backward replaces every gradient by the
mean over the global batch (``allreduce_gradients``: an all-reduce in buckets), so
(4) every rank takes the same optimizer step. A 2-rank run therefore equals the
1-rank run on the same global batches, up to the rounding of the sum
(tests/test_distributed.py holds it to 1e-10 in float64). Training metrics and a
sharded evaluation are summed over the ranks; only rank 0 writes files.

Model parallel, the paper's way (section 3.2) -- each rank holds one tower:

    world = mc.distributed.init(device)                 # mpiexec -n 2
    model = mc.distributed.TowerParallel(mc.models.alexnet(), world)

The processes talk through MPI (mpi4py; ``pip install minicnn[distributed]``
brings the Open MPI wheel and its mpiexec) and, between GPUs, NCCL (CuPy's
cupy.cuda.nccl, on CuPy's current stream, so it queues behind the backward pass
without a wait). Two processes sharing one GPU cannot use NCCL (it refuses two
ranks on one device): their device arrays go through MPI, copied to the host.

Failures do not hang: once init() has found more than one rank, an exception that
no one catches on any rank is printed and then ends every rank (MPI_Abort), and an
MPI collective that waits longer than ``timeout`` seconds (MINICNN_COLLECTIVE_TIMEOUT,
default 600) raises DistributedError, naming the rank and the operation. NCCL
collectives have no such timeout here (see docs/distributed.md).
"""

import copy
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from . import device as _device
from . import functional as F
from . import nn
from . import random as _random
from .autograd import Function
from .tensor import Parameter

# the variables an MPI launcher (Open MPI's mpiexec, MPICH's hydra, PMIx, Slurm's srun
# --mpi=pmi2/pmix) sets: without one of them this is a plain, single process
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
DEFAULT_TIMEOUT = 600.0
BUCKET_BYTES = 25 * 2**20   # gradients all-reduced together (PyTorch DDP's default bucket size)


class DistributedError(RuntimeError):
    """A collective operation failed or timed out."""


# --------------------------------------------------------------------------- communicators
class MPICommunicator:
    """Collectives on arrays through MPI (mpi4py). NumPy arrays go as they are; device
    arrays are copied to the host and back (two processes sharing one GPU, or no NCCL).

    Each collective is started non-blocking and waited for with a deadline, so a rank
    whose partner died or hangs raises DistributedError instead of waiting forever."""

    def __init__(self, comm, timeout):
        from mpi4py import MPI
        self.MPI, self.comm, self.timeout = MPI, comm, float(timeout)

    def _wait(self, request, what):
        deadline, polls = time.monotonic() + self.timeout, 0
        while not request.Test():           # Test() also drives MPI's progress
            polls += 1
            if polls > 1000:                # a long wait: leave the core to the ranks still computing
                time.sleep(0.0005)
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"rank {self.comm.rank} of {self.comm.size}: {what} waited more than {self.timeout:g} s for the "
                    "other ranks; one of them has stopped or is stuck (MINICNN_COLLECTIVE_TIMEOUT sets the limit)")

    @staticmethod
    def _host(array):
        """A contiguous NumPy array MPI can read and write (the array itself when it is one)."""
        return np.ascontiguousarray(_device.to_numpy(array))

    @staticmethod
    def _copy_back(host, array):
        if host is not array:
            array[...] = _device.array_module(array).asarray(host)

    def allreduce_sum_(self, array):
        host = self._host(array)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM), f"an all-reduce of {host.size} "
                   "numbers")
        self._copy_back(host, array)

    def broadcast_(self, array, root):
        host = self._host(array)
        self._wait(self.comm.Ibcast(host, root=root), f"a broadcast of {host.size} numbers")
        self._copy_back(host, array)

    def allgather(self, array):
        host = self._host(array)
        out = np.empty((self.comm.size,) + host.shape, host.dtype)
        self._wait(self.comm.Iallgather(host, out), f"an all-gather of {host.size} numbers")
        return _device.to_device(out, _device.device_of(array))

    def reduce_scatter(self, array):
        host = self._host(array)
        out = np.empty(host.shape[1:], host.dtype)
        self._wait(self.comm.Ireduce_scatter_block(host, out, op=self.MPI.SUM), f"a reduce-scatter of {host.size} "
                   "numbers")
        return _device.to_device(out, _device.device_of(array))


class NCCLCommunicator:
    """Collectives on CuPy arrays through NCCL (cupy.cuda.nccl), queued on CuPy's current
    stream -- the stream the kernels run on -- so nothing waits for the GPU here.

    ``nccl`` is the cupy.cuda.nccl module (a stand-in in the tests); the unique id that
    ties the ranks' communicators together is sent from rank 0 over MPI."""

    def __init__(self, nccl, mpi_comm):
        self.nccl = nccl
        unique_id = nccl.get_unique_id() if mpi_comm.rank == 0 else None
        unique_id = mpi_comm.bcast(unique_id, root=0)
        self.comm = nccl.NcclCommunicator(mpi_comm.size, unique_id, mpi_comm.rank)
        self.rank, self.size = mpi_comm.rank, mpi_comm.size

    @staticmethod
    def pointer(array):
        return array.data.ptr

    @staticmethod
    def stream():
        return _device._cupy().cuda.get_current_stream().ptr

    def _type(self, array):
        types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}
        if array.dtype not in types:
            raise TypeError(f"NCCL collectives here take float32 or float64 arrays, got {array.dtype}")
        if not array.flags.c_contiguous:
            raise ValueError("NCCL collectives need contiguous arrays")
        return types[array.dtype]

    def allreduce_sum_(self, array):
        self.comm.allReduce(self.pointer(array), self.pointer(array), array.size, self._type(array),
                            self.nccl.NCCL_SUM, self.stream())

    def broadcast_(self, array, root):
        self.comm.bcast(self.pointer(array), array.size, self._type(array), root, self.stream())

    def allgather(self, array):
        out = _device.array_module(array).empty((self.size,) + array.shape, array.dtype)
        self.comm.allGather(self.pointer(array), self.pointer(out), array.size, self._type(array), self.stream())
        return out

    def reduce_scatter(self, array):
        out = _device.array_module(array).empty(array.shape[1:], array.dtype)
        self.comm.reduceScatter(self.pointer(array), self.pointer(out), out.size, self._type(array),
                                self.nccl.NCCL_SUM, self.stream())
        return out


# --------------------------------------------------------------------------- the world
class World:
    """The processes of one job, as this process sees them.

    rank (0 .. size-1), size, local_rank (the rank among this machine's processes: it
    picks the GPU), device ("cpu" or "cuda"), is_main (rank 0: the one that writes).
    The collectives take arrays of either device; with size 1 they do nothing.
    """

    def __init__(self, rank=0, size=1, local_rank=0, device="cpu", mpi=None, nccl=None):
        self.rank, self.size, self.local_rank, self.device = rank, size, local_rank, device
        self.mpi, self.nccl = mpi, nccl          # MPICommunicator, NCCLCommunicator or None

    def __repr__(self):
        via = "NCCL" if self.nccl else "MPI" if self.mpi else "one process"
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, device={self.device!r}, {via})"

    @property
    def is_main(self):
        return self.rank == 0

    def _communicator(self, array):
        if self.nccl is not None and _device.device_of(array) == "cuda":
            return self.nccl
        return self.mpi

    def allreduce_sum_(self, array):
        """Replace ``array`` (in place) by its sum over the ranks."""
        if self.size > 1:
            self._communicator(array).allreduce_sum_(array)
        return array

    def broadcast_(self, array, root=0):
        """Replace ``array`` (in place) by rank ``root``'s."""
        if self.size > 1:
            self._communicator(array).broadcast_(array, root)
        return array

    def allgather(self, array):
        """Every rank's ``array`` (same shape everywhere), stacked: (size, *array.shape)."""
        if self.size == 1:
            return array[None]
        return self._communicator(array).allgather(array)

    def reduce_scatter(self, array):
        """array: (size, ...) on every rank -> this rank's block summed over the ranks: sum_r array_r[rank]."""
        if array.shape[0] != self.size:
            raise ValueError(f"reduce_scatter: the first axis must have one block per rank ({self.size}), "
                             f"got shape {array.shape}")
        if self.size == 1:
            return array[0]
        return self._communicator(array).reduce_scatter(array)

    def sum(self, values):
        """Host numbers summed over the ranks (a float64 NumPy array)."""
        return self.allreduce_sum_(np.array(values, dtype=np.float64))

    def barrier(self):
        """Wait until every rank has come here."""
        if self.size > 1:
            self.mpi.comm.Barrier()

    def broadcast_object(self, value, root=0):
        """A picklable Python value, rank ``root``'s on every rank (e.g. an output folder name)."""
        return self.mpi.comm.bcast(value, root=root) if self.size > 1 else value

    def abort(self, code=1):
        """End every rank of the job now (MPI_Abort); a no-op for one process."""
        if self.size > 1:
            self.mpi.comm.Abort(code)


_world = World()   # one process, until init() finds more


def world():
    """The World set up by init() (a single process before, or without, init)."""
    return _world


def launched_by_mpi():
    """Whether an MPI launcher (mpiexec, srun) started this process."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def init(device="cpu", timeout=None, use_nccl=None):
    """Join the MPI job this process belongs to and return its World (also ``world()``).

    Outside mpiexec (no launcher variables) it returns a one-process World and never
    imports MPI. device "cuda": this rank uses GPU ``local_rank % GPUs`` and, with
    more than one rank, NCCL for device arrays -- unless two ranks share a GPU (NCCL
    refuses that) or use_nccl=False, when device arrays go through MPI via the host.
    timeout: seconds an MPI collective may wait for the others (MINICNN_COLLECTIVE_TIMEOUT,
    default 600).
    """
    global _world
    _device.check_device_name(device)
    if timeout is None:
        timeout = float(os.environ.get("MINICNN_COLLECTIVE_TIMEOUT", DEFAULT_TIMEOUT))
    if not launched_by_mpi():
        _world = World(device=device)
        return _world
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError("this process was started by an MPI launcher but mpi4py is not installed: "
                           "pip install 'minicnn[distributed]' (mpi4py and the Open MPI wheel)") from e
    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)      # the ranks on this machine
    rank, size, local_rank, local_size = comm.rank, comm.size, local.rank, local.size
    nccl = None
    if device == "cuda":
        cupy = _device._cupy()
        gpus = cupy.cuda.runtime.getDeviceCount()
        if gpus == 0:
            raise RuntimeError(f"rank {rank}: device 'cuda' but no GPU is visible")
        cupy.cuda.Device(local_rank % gpus).use()
        if use_nccl is None:
            use_nccl = size > 1 and local_size <= gpus
        if use_nccl:
            nccl = NCCLCommunicator(nccl_module(), comm)
    _world = World(rank, size, local_rank, device, MPICommunicator(comm, timeout), nccl)
    if size > 1:
        _abort_all_on_uncaught_exception(comm)
    return _world


def nccl_module():
    """cupy.cuda.nccl, or an error that says how to get it."""
    try:
        from cupy.cuda import nccl
        nccl.get_version()
    except Exception as e:
        raise RuntimeError("NCCL is not available to CuPy (pip install nvidia-nccl-cu13, or the 'cuda' extra); "
                           "pass use_nccl=False to send device arrays through MPI instead") from e
    return nccl


def _abort_all_on_uncaught_exception(comm):
    """An exception that no one catches, on any rank, ends the whole job (as ``python -m
    mpi4py`` does): otherwise the other ranks would wait for it in their next collective."""
    previous = sys.excepthook
    if getattr(previous, "aborts_mpi", False):     # init() called again: installed already
        return

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.write(f"minicnn.distributed: rank {comm.rank} of {comm.size} stopped with {kind.__name__}; "
                         "aborting every rank\n")
        sys.stderr.flush()
        comm.Abort(1)

    hook.aborts_mpi = True
    sys.excepthook = hook


# --------------------------------------------------------------------------- data parallel
def broadcast_parameters(model, root=0, world=None):
    """Make every rank's parameters and buffers rank ``root``'s (in place)."""
    world = world or _world
    for t in model.parameters() + model.buffers():
        world.broadcast_(t.data, root)
        t._mark_modified()


def _buckets(parameters, bucket_bytes):
    """Consecutive runs of parameters of one dtype and device, about bucket_bytes each."""
    bucket, size = [], 0
    for p in parameters:
        if bucket and (size + p.data.nbytes > bucket_bytes or p.data.dtype != bucket[0].data.dtype
                       or p.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.data.nbytes
    if bucket:
        yield bucket


def allreduce_gradients(parameters, count, world=None, bucket_bytes=BUCKET_BYTES):
    """Replace each parameter's .grad by its mean over every image of the global batch.

    Each rank's gradient is that of its mean loss over its ``count`` images, so the
    global mean is sum_r(count_r * grad_r) / sum_r(count_r), exact also when the ranks
    hold unequal slices. The gradients are packed into buckets of about bucket_bytes,
    each bucket with this rank's count as a last entry, and each bucket is all-reduced
    in one call (few large messages instead of one per parameter). Buckets go from the
    last layer to the first, the order backward produces them in: a version that
    overlaps the all-reduce with backward (docs/distributed.md) would start with these.
    A parameter without a gradient on this rank counts as a zero gradient.
    """
    world = world or _world
    if world.size == 1:
        return
    trainable = [p for p in parameters if p.requires_grad]
    for bucket in _buckets(reversed(trainable), bucket_bytes):
        xp = bucket[0].xp
        dtype = bucket[0].data.dtype
        flat = xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).ravel() * dtype.type(count)
                               for p in bucket] + [xp.full(1, count, dtype=dtype)])
        world.allreduce_sum_(flat)
        flat /= flat[-1:].copy()            # the global batch's image count, without reading it on the host
        start = 0
        for p in bucket:
            p.grad = flat[start:start + p.data.size].reshape(p.shape)
            start += p.data.size


def prepare_fit(model, train_loader, checkpoint, world=None):
    """What fit does first when the job has several ranks. Returns whether it trains data
    parallel: the training loader is sharded (num_replicas > 1). Then every rank must take
    as many steps (each step's all-reduce waits for all of them) and starts from rank 0's
    weights. A TowerParallel model trains on an unsharded loader (both towers see every
    image). Anything else on several ranks would train the same model N times over."""
    world = world or _world
    data_parallel = getattr(train_loader, "num_replicas", 1) > 1
    if data_parallel:
        if isinstance(model, TowerParallel):
            raise ValueError("a TowerParallel model trains on an unsharded loader: both towers see every image "
                             "(averaging the two towers' gradients would mix different weights)")
        if train_loader.num_replicas != world.size:
            raise ValueError(f"the training loader is sharded for {train_loader.num_replicas} ranks but the job has "
                             f"{world.size} (DataLoader(..., num_replicas=world.size, rank=world.rank))")
        _check_same_length(train_loader, world)
        broadcast_parameters(model, world=world)
    elif isinstance(model, TowerParallel):
        if checkpoint is not None:
            raise ValueError("fit does not write checkpoints of a TowerParallel model: each rank holds one tower's "
                             "weights (save each rank's model.state_dict() yourself)")
    elif world.size > 1:
        raise ValueError(f"the job has {world.size} ranks but the training loader is not sharded, so each rank would "
                         "train on every image: give it num_replicas=world.size and rank=world.rank")
    return data_parallel


def _check_same_length(loader, world):
    lengths = world.allgather(np.array([len(loader)], dtype=np.float64)).ravel()
    if len(set(lengths.tolist())) > 1:
        raise ValueError(f"the ranks' training loaders give different numbers of batches {lengths.astype(int).tolist()}"
                         ": every rank must take the same steps; give the DataLoader drop_last=True (a short last "
                         "batch may leave some ranks without images), and the same dataset and batch_size everywhere")


# --------------------------------------------------------------------------- model parallel: the towers
TOWER_STRIDE = 2**40   # tower t's dropout numbers its elements from t * 2^40 on: far beyond any batch


class _GatherTowers(Function):
    """(N, C/size, ...) on each rank -> (N, C, ...): the towers' parts side by side along axis 1.

    backward, when the next layer is split across the towers (conv3, fc6, fc7 on each
    rank see all of it, each computing its own half): this rank's part fed every rank's
    half, so its gradient is the sum over the ranks of their gradient's slice -- a
    reduce-scatter. When what follows is the same on every rank (the logits, from which
    every rank computes the same loss), each rank's gradient is already the whole one:
    its slice is taken, not summed."""

    @staticmethod
    def forward(ctx, x, world, replicated_after):
        ctx.world, ctx.replicated_after = world, replicated_after
        xp = _device.array_module(x)
        parts = world.allgather(xp.ascontiguousarray(x))                  # (size, N, C/size, ...)
        return xp.concatenate(list(parts), axis=1)

    @staticmethod
    def backward(ctx, grad_output):
        world = ctx.world
        xp = _device.array_module(grad_output)
        parts = xp.stack(xp.split(grad_output, world.size, axis=1))      # (size, N, C/size, ...)
        if ctx.replicated_after:
            return xp.ascontiguousarray(parts[world.rank]), None, None
        return world.reduce_scatter(xp.ascontiguousarray(parts)), None, None


class _TowerDropout(nn.Module):
    """Dropout on one tower's features, its elements numbered from tower * TOWER_STRIDE
    (plus the sample offset), so the towers draw independent masks from one seed."""

    def __init__(self, p, tower):
        super().__init__()
        self.p, self.tower = p, tower

    def forward(self, x):
        offset = self.tower * TOWER_STRIDE + _random.dropout_offset(x.shape)
        return F.dropout(x, self.p, self.training, offset=offset)

    def extra_repr(self):
        return f"p={self.p}, tower={self.tower}"


class TowerParallel(nn.Module):
    """This rank's tower of an AlexNet-like network, spread over ``world.size`` ranks as the
    paper spread AlexNet over two GPUs (section 3.2, figure 2).

    model: a Sequential (mc.models.alexnet(), alexnet_small()) whose grouped convolutions
    have groups == world.size. Rank r keeps tower r: group r of each grouped convolution
    (conv2, conv4, conv5: a tower sees only its own channels, no communication), and the
    r-th slice of the output channels or features of every other convolution and dense
    layer (conv1, conv3, fc6, fc7, fc8). Where such a layer follows split activations
    (conv3, fc6, fc7, fc8: the paper's "GPUs communicate only in certain layers") the
    towers' activations are all-gathered first; the logits are gathered at the end, so
    every rank returns the whole (N, classes) output and computes the same loss.

    As in the paper, LRN normalises within a tower (the single-process model's
    norm layers see the other tower's channels at the border), and each tower draws its
    own dropout mask. The model's parameters are sliced from ``model`` as it is (build
    it from the same seed on every rank, or load the same weights). Train it with an
    unsharded loader: both ranks see every image.
    """

    def __init__(self, model, world=None):
        super().__init__()
        world = world or _world
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"TowerParallel takes a Sequential (mc.models.alexnet()), got {type(model).__name__}")
        self.world = world
        layers, gather_before, split = [], [], False      # split: the activation is cut into towers
        for name, layer in model.named_children():
            tower_layer, gather = self._tower_layer(name, layer, split, world)
            layers.append((name, tower_layer))
            gather_before.append(gather)
            split = split or isinstance(layer, (nn.Conv2d, nn.Linear))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.gather_before, self.split_output = gather_before, split

    @staticmethod
    def _tower_layer(name, layer, split, world):
        """(this rank's version of ``layer``, whether the towers' activations are gathered before it)."""
        r, size = world.rank, world.size
        if isinstance(layer, nn.Conv2d):
            if layer.groups == 1:            # sees every channel: gather split inputs, keep our output channels
                return _slice_outputs(layer, r, size), split
            if layer.groups == size and split:   # tower r's own group: no communication
                tower = _slice_outputs(layer, r, size)
                tower.in_channels, tower.groups = layer.in_channels // size, 1
                return tower, False
            raise ValueError(f"TowerParallel: {name} has groups={layer.groups}; with {size} towers a convolution "
                             f"needs groups 1, or {size} after the towers have split")
        if isinstance(layer, nn.Linear):
            return _slice_outputs(layer, r, size), split
        if isinstance(layer, nn.Dropout) and split:
            return _TowerDropout(layer.p, r), False
        if not split or isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.LocalResponseNorm, nn.Flatten)):
            return layer, False              # elementwise, per channel, or within a tower's channels
        raise ValueError(f"TowerParallel: does not know how to split {name} ({type(layer).__name__}) across towers")

    def forward(self, x):
        for gather, layer in zip(self.gather_before, self.layers.children()):
            if gather:
                x = _GatherTowers.apply(x, self.world, False)
            x = layer(x)
        if self.split_output:
            x = _GatherTowers.apply(x, self.world, True)
        return x


def _slice_outputs(layer, rank, size):
    """A copy of a Conv2d or Linear that computes only the rank-th of ``size`` equal blocks of its outputs."""
    outputs = layer.weight.shape[0]
    if outputs % size:
        raise ValueError(f"TowerParallel: {outputs} outputs do not split into {size} towers")
    block = slice(rank * outputs // size, (rank + 1) * outputs // size)
    tower = copy.deepcopy(layer)          # the hyper-parameters; the weights are replaced below
    tower.weight = Parameter(layer.weight.data[block].copy(), requires_grad=layer.weight.requires_grad)
    if layer.bias is not None:
        tower.bias = Parameter(layer.bias.data[block].copy(), requires_grad=layer.bias.requires_grad)
    if isinstance(layer, nn.Conv2d):
        tower.out_channels = outputs // size
    else:
        tower.out_features = outputs // size
    return tower
