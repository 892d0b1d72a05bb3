"""Networks (mc.models)."""

from .alexnet import alexnet, alexnet_small
from .vgg import vgg16, AdaptiveAvgPool2d
from .torchvision_alexnet import alexnet_torchvision
