"""The command line: python -m minicnn train | evaluate | summary | transfer | export | graph | trace | explain | explore.

    python -m minicnn train                      # the main job: small AlexNet on 5,000 MNIST digits
    python -m minicnn train --dataset folder:~/photos --model alexnet --epochs 30
    python -m minicnn evaluate runs/<timestamp>/checkpoint.npz --ten-crop
    python -m minicnn summary alexnet
    python -m minicnn transfer --help
    mpiexec -n 2 python -m minicnn train           # data parallel: the same run on two processes
    python -m minicnn export runs/<timestamp>/checkpoint.npz model.onnx
    python -m minicnn graph alexnet_small
    python -m minicnn trace alexnet --batch 8
    python -m minicnn explain conv2d
    python -m minicnn explore runs/<timestamp>/checkpoint.npz --image digit.png --out page.html

Exit status: 0 when done; 2 when the command line asks for something that cannot
work (argparse's convention: a bad option, a missing folder or file, a file that is
not a checkpoint or holds NaN weights, a shape a model cannot take, a batch larger than
the data, an --out that holds another run or that another train is writing); 1 when
something fails while running (the training diverged, an image turned out unreadable);
130 when interrupted (Ctrl-C). Each prints one "error:" line; --debug (or MINICNN_DEBUG=1)
shows the Python traceback instead.
"""

# One module per command family, each registering its parsers and their run functions
# (set_defaults(run=...)), as Caffe's tools/caffe.cpp registers one function per command:
#   common.py         what they share: UsageError (exit status 2), --help's format, option types, the zoo
#   train.py          train, evaluate: the main job, its data recipes and the held-out test set's record
#   tools.py          summary, export, graph, trace, explain, explore
#   transfer_demo.py  transfer: the transfer-learning demonstration

import argparse
import os
import sys

from . import tools, train, transfer_demo
from .common import HelpFormatter, UsageError


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minicnn", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (also: MINICNN_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error "
                                                             "(also: MINICNN_DEBUG=1)")

    train.add_train_parser(commands, common)
    train.add_evaluate_parser(commands, common)
    tools.add_summary_parser(commands, common)
    transfer_demo.add_transfer_parser(commands, common)
    tools.add_export_parser(commands, common)
    tools.add_graph_parser(commands, common)
    tools.add_trace_parser(commands, common)
    tools.add_explain_parser(commands, common)
    tools.add_explore_parser(commands, common)
    return parser


def _debugging(argv):
    return "--debug" in argv or os.environ.get("MINICNN_DEBUG", "") not in ("", "0")


def main(argv=None):
    """Run a command; return its exit status (0, 1 or 2; see the module's docstring)."""
    status = _main(argv)
    if status != 0:   # under mpiexec: end every rank, rather than leave the others waiting for this one
        from ..distributed import world
        world().abort(status)
    return status


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debugging(argv)
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError, MemoryError, RuntimeError) as e:
        if debug:
            raise
        print(f"error: {e} (--debug shows where)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug of minicnn's, not the user's: say so
        if debug:
            raise
        print(f"error: internal error {type(e).__name__}: {e}; please report it with the output of --debug",
              file=sys.stderr)
        return 1
