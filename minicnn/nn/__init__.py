"""Layers and containers (mc.nn)."""

from ..tensor import Parameter
from .module import Module, Sequential
from .layers import (AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, LeakyReLU, Linear, LocalResponseNorm,
                     MaxPool2d, ReLU, Sigmoid, Tanh)
