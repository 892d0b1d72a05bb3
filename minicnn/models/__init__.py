"""Networks (mc.models).

Each model a builder of the zoo returns remembers how it was built: ``model.architecture``
is ``{"name": "alexnet_small", "arguments": {"num_classes": 10, ...}}`` (every argument,
defaults included). mc.save stores it in the checkpoint and ``build(architecture)`` makes
the same network again, so a checkpoint knows its model, as a Keras file knows its config
(``python -m minicnn evaluate`` rebuilds it from there). A model changed after it was built
(a layer replaced) still records what it was built as.
"""

import functools
import inspect

from .alexnet import alexnet as _alexnet, alexnet_small as _alexnet_small
from .vgg import vgg16 as _vgg16, vgg16_bn as _vgg16_bn
from .resnet import resnet18 as _resnet18
from .torchvision_alexnet import alexnet_torchvision as _alexnet_torchvision
from ..nn import AdaptiveAvgPool2d  # noqa: F401 (its home is mc.nn now; the old name keeps working)


def _records_its_architecture(builder):
    """The zoo builder ``builder``, whose models remember its name and their arguments."""

    @functools.wraps(builder)
    def build_and_record(*args, **kwargs):
        model = builder(*args, **kwargs)
        arguments = inspect.signature(builder).bind(*args, **kwargs)
        arguments.apply_defaults()
        model.architecture = {"name": builder.__name__, "arguments": dict(arguments.arguments)}
        return model
    return build_and_record


alexnet = _records_its_architecture(_alexnet)
alexnet_small = _records_its_architecture(_alexnet_small)
alexnet_torchvision = _records_its_architecture(_alexnet_torchvision)
vgg16 = _records_its_architecture(_vgg16)
vgg16_bn = _records_its_architecture(_vgg16_bn)
resnet18 = _records_its_architecture(_resnet18)

# every builder of the zoo, by name
ZOO = {builder.__name__: builder for builder in (alexnet, alexnet_small, alexnet_torchvision, vgg16, vgg16_bn,
                                                 resnet18)}


def build(architecture):
    """The network a ``model.architecture`` record describes (as a checkpoint stores it), freshly
    initialised: ``build(model.architecture)`` is another model like ``model``."""
    if not isinstance(architecture, dict) or set(architecture) != {"name", "arguments"}:
        raise ValueError(f"an architecture is a dict with a 'name' and its 'arguments', got {architecture!r}")
    name = architecture["name"]
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(ZOO)}")
    return ZOO[name](**architecture["arguments"])
