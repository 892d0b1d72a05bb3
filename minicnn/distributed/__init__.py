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

The package, one job per module:

    communicators.py   MPICommunicator, NCCLCommunicator: collectives on arrays
    job.py             World (rank, size, the collectives of either device) and init()
    data_parallel.py   the data-parallel step: broadcast_parameters, allreduce_gradients, prepare_fit
    towers.py          TowerParallel: the paper's two towers on two processes
"""

from .communicators import DistributedError, MPICommunicator, NCCLCommunicator, nccl_module  # noqa: F401
from .job import LAUNCHER_VARIABLES, DEFAULT_TIMEOUT, World, world, launched_by_mpi, init  # noqa: F401
from .data_parallel import BUCKET_BYTES, broadcast_parameters, allreduce_gradients, prepare_fit  # noqa: F401
from .towers import TOWER_STRIDE, TowerParallel  # noqa: F401
