"""Networks (mc.models)."""

from .alexnet import alexnet, alexnet_small
from .vgg import vgg16, vgg16_bn
from .resnet import resnet18
from ..nn import AdaptiveAvgPool2d  # noqa: F401 (its home is mc.nn now; the old name keeps working)
from .torchvision_alexnet import alexnet_torchvision
