"""Networks (mc.models)."""

from .alexnet import alexnet, alexnet_small
