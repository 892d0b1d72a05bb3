"""What the commands share: the user's mistakes (exit status 2), --help's format, option types, the zoo."""

import argparse
import contextlib

# every model of the zoo (mc.models.ZOO) and the input it is built for, for `summary`, `graph`, `trace`
# and `evaluate` (tests/test_cli.py holds the two lists equal)
ZOO = {"alexnet": (3, 227, 227), "alexnet_small": (1, 28, 28), "alexnet_torchvision": (3, 224, 224),
       "vgg16": (3, 224, 224), "vgg16_bn": (3, 224, 224), "resnet18": (3, 224, 224)}


class UsageError(Exception):
    """The command line asks for something that cannot work (exit status 2)."""


@contextlib.contextmanager
def user_input(what=None):
    """Errors raised while reading what the user named (files, folders, settings) are the
    user's to fix: they become a UsageError (exit status 2), optionally prefixed."""
    try:
        yield
    except (ValueError, TypeError, OSError, ImportError) as e:
        raise UsageError(f"{what}: {e}" if what else str(e)) from e


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the descriptions' line breaks and shows each option's default
    (unless its help already says it, or it is a flag that is off by default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def choose_device(name):
    from ..device import cuda_available
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        raise UsageError("--device cuda, but no CUDA GPU is usable (is CuPy installed? pip install cupy-cuda13x); "
                         "use --device cpu")
    return name
