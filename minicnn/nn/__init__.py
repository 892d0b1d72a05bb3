"""Layers and containers (mc.nn)."""

from ..tensor import Parameter
from .module import Module, ModuleDict, ModuleList, Sequential
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, BCEWithLogitsLoss, Conv2d,
                     CrossEntropyLoss, Dropout, Dropout2d, Flatten, GlobalAvgPool2d, Identity, LeakyReLU, Linear,
                     LocalResponseNorm, MaxPool2d, MaxUnpool2d, MSELoss, NLLLoss, ReLU, Sigmoid, Softmax, Tanh)
