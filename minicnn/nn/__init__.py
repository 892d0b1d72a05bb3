"""Layers and containers (mc.nn)."""

from ..tensor import Parameter
from .module import Module, ModuleDict, ModuleList, Sequential
from .layers import (AvgPool2d, BCEWithLogitsLoss, Conv2d, CrossEntropyLoss, Dropout, Flatten, GlobalAvgPool2d,
                     Identity, LeakyReLU, Linear, LocalResponseNorm, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh)
