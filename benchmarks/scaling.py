"""Data-parallel scaling: training images per second on 1 and 2 ranks, and the all-reduce's share.

    python benchmarks/scaling.py                          # CPU: 1 and 2 ranks, alexnet_small, global batch 64
    python benchmarks/scaling.py --ranks 1 2 4 --device cuda --model alexnet --batch 128
    python benchmarks/scaling.py --rounds 5 --json runs/scaling.json

For each rank count it launches ``mpiexec -n R`` on this script (``--worker``); each rank
times training steps exactly as mc.fit takes them (forward on its slice of the global
batch, backward, the bucketed gradient all-reduce, the SGD step) on random images --
data loading is left out, so what is measured is the compute and the communication.
Per step: the whole step; the wait for the slowest rank to finish its backward (a barrier,
which in mc.fit the all-reduce itself absorbs); and the all-reduce alone (on a GPU the
stream is synchronized around it, which serializes what NCCL would otherwise queue behind
backward). On a machine shared with other work the wait is the noisy part.

Two ways to scale (--scaling):
  strong  the global batch stays --batch: R ranks take a slice of batch/R each; the
          images per second of R ranks against 1 rank is the speed-up of one training run
  weak    each rank takes --batch: the global batch grows with R (and with it, for the same
          schedule, the learning rate would have to)
Threads: on the CPU each rank gets cores/R BLAS and OpenMP threads (--threads overrides),
so 1 rank and 2 ranks both use the whole machine.

Noisy machines: the rank counts are run in turn, --rounds times (1, 2, 1, 2, ...), and the
JSON keeps every round, with the median, min and max of each. Also measured, without any
compute: the all-reduce of a buffer the size of the model's gradients (alexnet_small and
the paper's alexnet), the communication a step cannot avoid.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))            # run from a checkout without installing


# --------------------------------------------------------------------------- one rank (under mpiexec)
def synchronize(device):
    if device == "cuda":
        import cupy
        cupy.cuda.get_current_stream().synchronize()


def build_model(name):
    import minicnn as mc
    if name == "alexnet":
        return mc.models.alexnet(num_classes=1000), (3, 227, 227), 1000
    return mc.models.alexnet_small(num_classes=10, in_channels=1, input_size=24), (1, 24, 24), 10


def worker(args):
    import minicnn as mc
    import minicnn.functional as F
    from minicnn import distributed
    from minicnn import random as mc_random

    world = distributed.init(args.device)
    mc.manual_seed(0)
    model, shape, classes = build_model(args.model)
    model.to(args.device)
    distributed.broadcast_parameters(model, world=world)
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    local = args.batch if args.scaling == "weak" else args.batch // world.size
    rng = np.random.default_rng(world.rank)
    images = mc.Tensor(rng.standard_normal((local,) + shape).astype(np.float32)).to(args.device)
    labels = rng.integers(0, classes, local)
    steps, wait_seconds, reduce_seconds = [], [], []
    for step in range(args.warmup + args.steps):
        synchronize(args.device)
        world.barrier()                     # every rank starts the step together
        start = time.perf_counter()
        with mc_random.first_sample(world.rank * local):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        synchronize(args.device)
        wait_start = time.perf_counter()
        world.barrier()                     # the ranks that finished backward first wait here
        reduce_start = time.perf_counter()
        distributed.allreduce_gradients(model.parameters(), local, world)
        synchronize(args.device)
        reduce_end = time.perf_counter()
        optimizer.step()
        synchronize(args.device)
        if step >= args.warmup:
            steps.append(time.perf_counter() - start)
            wait_seconds.append(reduce_start - wait_start)
            reduce_seconds.append(reduce_end - reduce_start)
    # the slowest rank sets the pace: report, per step, the maximum over the ranks
    steps = world.allgather(np.array(steps)).max(axis=0)
    reduce_seconds = world.allgather(np.array(reduce_seconds)).max(axis=0)
    wait_seconds = world.allgather(np.array(wait_seconds)).max(axis=0)
    bare = bare_allreduce(world, args.device) if args.bare_allreduce else {}
    if world.is_main:
        step = statistics.median(steps)
        print(json.dumps(dict(
            ranks=world.size, device=args.device, model=args.model, scaling=args.scaling,
            global_batch=local * world.size, batch_per_rank=local, threads_per_rank=int(os.environ.get("OMP_NUM_THREADS", 0)),
            step_s=step, images_per_s=local * world.size / step, allreduce_s=statistics.median(reduce_seconds),
            allreduce_share=statistics.median(reduce_seconds) / step, wait_s=statistics.median(wait_seconds),
            wait_share=statistics.median(wait_seconds) / step, steps_s=list(map(float, steps)),
            gradient_floats=int(sum(p.data.size for p in model.parameters())), bare_allreduce=bare)))


def bare_allreduce(world, device):
    """Seconds for the all-reduce of a float32 buffer as large as each model's gradients (median of 5)."""
    if world.size == 1:
        return {}
    from minicnn import device as _device
    out = {}
    small = sum(p.data.size for p in build_model("alexnet_small")[0].parameters())
    for name, floats in (("alexnet_small", small), ("alexnet", 60_965_224)):
        buffer = _device.to_device(np.ones(floats, dtype=np.float32), device)
        times = []
        for _ in range(6):
            synchronize(device)
            world.barrier()
            start = time.perf_counter()
            world.allreduce_sum_(buffer)
            synchronize(device)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times[1:])
        out[name] = dict(floats=floats, seconds=seconds, gb_per_s=floats * 4 / seconds / 1e9)
    return out


# --------------------------------------------------------------------------- the driver
def launch(ranks, args):
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        raise SystemExit("error: no mpiexec: pip install 'minicnn[distributed]' (mpi4py and the Open MPI wheel)")
    threads = args.threads or max(1, (os.cpu_count() or 1) // ranks)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    options = ["--oversubscribe", "--bind-to", "none"] if "Open MPI" in version else []
    command = [mpiexec, *options, "-n", str(ranks), sys.executable, __file__, "--worker", "--device", args.device,
               "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--scaling", args.scaling] + ([] if args.bare_allreduce else ["--no-bare-allreduce"])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs):
    """Per rank count: median, min and max over the rounds of images/s, step and all-reduce share."""
    summary = {}
    for ranks in sorted({r["ranks"] for r in runs}):
        mine = [r for r in runs if r["ranks"] == ranks]
        summary[str(ranks)] = {key: dict(median=statistics.median(r[key] for r in mine),
                                         min=min(r[key] for r in mine), max=max(r[key] for r in mine))
                               for key in ("images_per_s", "step_s", "allreduce_s", "allreduce_share", "wait_s",
                                           "wait_share")}
    one = summary.get("1")
    for ranks, entry in summary.items():
        if one:
            entry["speedup"] = entry["images_per_s"]["median"] / one["images_per_s"]["median"]
    return summary


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=("alexnet_small", "alexnet"), default="alexnet_small")
    parser.add_argument("--batch", type=int, default=64, help="the global batch (strong) or each rank's (weak)")
    parser.add_argument("--scaling", choices=("strong", "weak"), default="strong")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="times each rank count is run, in turn")
    parser.add_argument("--threads", type=int, default=0, help="BLAS/OpenMP threads per rank (default cores/ranks)")
    parser.add_argument("--no-bare-allreduce", dest="bare_allreduce", action="store_false",
                        help="skip the all-reduce of model-sized buffers without compute")
    parser.add_argument("--json", default="runs/scaling.json", help="where the results go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(args)
    runs = []
    for round_ in range(args.rounds):
        for ranks in args.ranks:
            run = launch(ranks, args)
            run["round"] = round_
            runs.append(run)
            print(f"round {round_ + 1}/{args.rounds}: {ranks} rank(s) x {run['threads_per_rank']} thread(s), "
                  f"global batch {run['global_batch']}: {run['images_per_s']:.1f} images/s, step "
                  f"{run['step_s'] * 1000:.1f} ms, waiting for the slowest rank {run['wait_s'] * 1000:.1f} ms, "
                  f"all-reduce {run['allreduce_s'] * 1000:.2f} ms ({run['allreduce_share']:.1%})", flush=True)
    result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                               python=platform.python_version(), load_average=os.getloadavg()),
                  settings={k: v for k, v in vars(args).items() if k not in ("worker", "json")},
                  summary=summarize(runs), runs=runs)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    for ranks, entry in result["summary"].items():
        print(f"{ranks} rank(s): {entry['images_per_s']['median']:.1f} images/s (min {entry['images_per_s']['min']:.1f}, "
              f"max {entry['images_per_s']['max']:.1f}), all-reduce {entry['allreduce_share']['median']:.1%} and "
              f"waiting {entry['wait_share']['median']:.1%} of a step" + (f", speed-up {entry['speedup']:.2f}x" if "speedup" in entry else ""))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
