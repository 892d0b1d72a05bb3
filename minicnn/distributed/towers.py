"""Model parallel, the paper's way (section 3.2): each rank holds one tower of AlexNet."""

import copy
from collections import OrderedDict

from .. import device as _device
from .. import functional as F
from .. import nn
from .. import random as _random
from ..autograd import Function
from ..tensor import Parameter
from . import job

TOWER_STRIDE = 2**40   # tower t's dropout numbers its elements from t * 2^40 on: far beyond any batch


class _GatherTowers(Function):
    """(N, C/size, ...) on each rank -> (N, C, ...): the towers' parts side by side along axis 1.

    backward, when the next layer is split across the towers (conv3, fc6, fc7 on each
    rank see all of it, each computing its own half): this rank's part fed every rank's
    half, so its gradient is the sum over the ranks of their gradient's slice -- a
    reduce-scatter. When what follows is the same on every rank (the logits, from which
    every rank computes the same loss), each rank's gradient is already the whole one:
    its slice is taken, not summed."""

    @staticmethod
    def forward(ctx, x, world, replicated_after):
        ctx.world, ctx.replicated_after = world, replicated_after
        xp = _device.array_module(x)
        parts = world.allgather(xp.ascontiguousarray(x))                  # (size, N, C/size, ...)
        return xp.concatenate(list(parts), axis=1)

    @staticmethod
    def backward(ctx, grad_output):
        world = ctx.world
        xp = _device.array_module(grad_output)
        parts = xp.stack(xp.split(grad_output, world.size, axis=1))      # (size, N, C/size, ...)
        if ctx.replicated_after:
            return xp.ascontiguousarray(parts[world.rank]), None, None
        return world.reduce_scatter(xp.ascontiguousarray(parts)), None, None


class _TowerDropout(nn.Module):
    """Dropout on one tower's features, its elements numbered from tower * TOWER_STRIDE
    (plus the sample offset), so the towers draw independent masks from one seed."""

    def __init__(self, p, tower):
        super().__init__()
        self.p, self.tower = p, tower

    def forward(self, x):
        offset = self.tower * TOWER_STRIDE + _random.dropout_offset(x.shape)
        return F.dropout(x, self.p, self.training, offset=offset)

    def extra_repr(self):
        return f"p={self.p}, tower={self.tower}"


class TowerParallel(nn.Module):
    """This rank's tower of an AlexNet-like network, spread over ``world.size`` ranks as the
    paper spread AlexNet over two GPUs (section 3.2, figure 2).

    model: a Sequential (mc.models.alexnet(), alexnet_small()) whose grouped convolutions
    have groups == world.size. Rank r keeps tower r: group r of each grouped convolution
    (conv2, conv4, conv5: a tower sees only its own channels, no communication), and the
    r-th slice of the output channels or features of every other convolution and dense
    layer (conv1, conv3, fc6, fc7, fc8). Where such a layer follows split activations
    (conv3, fc6, fc7, fc8: the paper's "GPUs communicate only in certain layers") the
    towers' activations are all-gathered first; the logits are gathered at the end, so
    every rank returns the whole (N, classes) output and computes the same loss.

    As in the paper, LRN normalises within a tower (the single-process model's
    norm layers see the other tower's channels at the border), and each tower draws its
    own dropout mask. The model's parameters are sliced from ``model`` as it is (build
    it from the same seed on every rank, or load the same weights). Train it with an
    unsharded loader: both ranks see every image.
    """

    def __init__(self, model, world=None):
        super().__init__()
        world = world or job.world()
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"TowerParallel takes a Sequential (mc.models.alexnet()), got {type(model).__name__}")
        self.world = world
        layers, gather_before, split = [], [], False      # split: the activation is cut into towers
        for name, layer in model.named_children():
            tower_layer, gather = self._tower_layer(name, layer, split, world)
            layers.append((name, tower_layer))
            gather_before.append(gather)
            split = split or isinstance(layer, (nn.Conv2d, nn.Linear))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.gather_before, self.split_output = gather_before, split

    @staticmethod
    def _tower_layer(name, layer, split, world):
        """(this rank's version of ``layer``, whether the towers' activations are gathered before it)."""
        r, size = world.rank, world.size
        if isinstance(layer, nn.Conv2d):
            if layer.groups == 1:            # sees every channel: gather split inputs, keep our output channels
                return _slice_outputs(layer, r, size), split
            if layer.groups == size and split:   # tower r's own group: no communication
                tower = _slice_outputs(layer, r, size)
                tower.in_channels, tower.groups = layer.in_channels // size, 1
                return tower, False
            raise ValueError(f"TowerParallel: {name} has groups={layer.groups}; with {size} towers a convolution "
                             f"needs groups 1, or {size} after the towers have split")
        if isinstance(layer, nn.Linear):
            return _slice_outputs(layer, r, size), split
        if isinstance(layer, nn.Dropout) and split:
            return _TowerDropout(layer.p, r), False
        if not split or isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.LocalResponseNorm, nn.Flatten)):
            return layer, False              # elementwise, per channel, or within a tower's channels
        raise ValueError(f"TowerParallel: does not know how to split {name} ({type(layer).__name__}) across towers")

    def forward(self, x):
        for gather, layer in zip(self.gather_before, self.layers.children()):
            if gather:
                x = _GatherTowers.apply(x, self.world, False)
            x = layer(x)
        if self.split_output:
            x = _GatherTowers.apply(x, self.world, True)
        return x


def _slice_outputs(layer, rank, size):
    """A copy of a Conv2d or Linear that computes only the rank-th of ``size`` equal blocks of its outputs."""
    outputs = layer.weight.shape[0]
    if outputs % size:
        raise ValueError(f"TowerParallel: {outputs} outputs do not split into {size} towers")
    block = slice(rank * outputs // size, (rank + 1) * outputs // size)
    tower = copy.deepcopy(layer)          # the hyper-parameters; the weights are replaced below
    tower.weight = Parameter(layer.weight.data[block].copy(), requires_grad=layer.weight.requires_grad)
    if layer.bias is not None:
        tower.bias = Parameter(layer.bias.data[block].copy(), requires_grad=layer.bias.requires_grad)
    if isinstance(layer, nn.Conv2d):
        tower.out_channels = outputs // size
    else:
        tower.out_features = outputs // size
    return tower
