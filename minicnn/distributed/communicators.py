"""The communicators: collectives on arrays through MPI (mpi4py) or NCCL (CuPy's cupy.cuda.nccl).

A World (job.py) holds one or both and picks, per array, the one that can take it.
"""

import time

import numpy as np

from .. import device as _device


class DistributedError(RuntimeError):
    """A collective operation failed or timed out."""



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



def nccl_module():
    """cupy.cuda.nccl, or an error that says how to get it."""
    try:
        from cupy.cuda import nccl
        nccl.get_version()
    except Exception as e:
        raise RuntimeError("NCCL is not available to CuPy (pip install nvidia-nccl-cu13, or the 'cuda' extra); "
                           "pass use_nccl=False to send device arrays through MPI instead") from e
    return nccl
