"""The processes of one job: World (rank, size, the collectives) and init(), which joins the MPI job.

Outside an MPI launcher there is one process and MPI is never imported.
"""

import os
import sys

import numpy as np

from .. import device as _device
from . import communicators

# the variables an MPI launcher (Open MPI's mpiexec, MPICH's hydra, PMIx, Slurm's srun
# --mpi=pmi2/pmix) sets: without one of them this is a plain, single process
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
DEFAULT_TIMEOUT = 600.0


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
            nccl = communicators.NCCLCommunicator(communicators.nccl_module(), comm)
    _world = World(rank, size, local_rank, device, communicators.MPICommunicator(comm, timeout), nccl)
    if size > 1:
        _abort_all_on_uncaught_exception(comm)
    return _world


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
