"""Data parallel: every rank holds the whole model and a slice of each batch (see the package's docstring)."""

import numpy as np

from . import job
from .towers import TowerParallel

BUCKET_BYTES = 25 * 2**20   # gradients all-reduced together (PyTorch DDP's default bucket size)


def broadcast_parameters(model, root=0, world=None):
    """Make every rank's parameters and buffers rank ``root``'s (in place)."""
    world = world or job.world()
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
    world = world or job.world()
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
    world = world or job.world()
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
