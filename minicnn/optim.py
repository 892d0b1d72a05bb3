"""Optimizers (SGD, Adam) and learning-rate schedules (StepLR, ReduceLROnPlateau).

An optimizer holds ``param_groups``: lists of parameters that share settings
(e.g. a smaller lr for pretrained layers when fine-tuning):

    opt = SGD([{"params": model.features.parameters(), "lr": 1e-3},
               {"params": model.classifier.parameters()}], lr=1e-2, momentum=0.9)

A parameter with ``requires_grad == False`` (frozen) or without a gradient
(``grad is None``: it took no part in the loss) is skipped by ``step()``: it
does not move and its momentum is not touched.

The update itself runs in the backend of the parameter's device
(``backends.for_array``): NumPy on the CPU, the CUDA kernels on a GPU.
"""

import math

import numpy as np

from . import autograd, backends
from . import device as _device


class Optimizer:
    """The base class: parameter groups, zero_grad, and state_dict for checkpoints.

    ``state`` maps a parameter's position (counting through all groups in order)
    to its buffers, e.g. ``{"velocity": array}``.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty list of parameters")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict {"params": [...], setting: value, ...}; missing settings take the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown optimizer settings {sorted(unknown)}; known: {sorted(self.defaults)}")
        group = {**self.defaults, **group, "params": list(group["params"])}
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not hasattr(p, "data") or not hasattr(p, "grad"):
                raise TypeError(f"optimizers take Parameters (tensors), got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one parameter group (or twice in one)")
            seen.add(id(p))
        self._check_settings(group)
        group["initial_lr"] = group.get("initial_lr", group["lr"])  # schedules count from here
        self.param_groups.append(group)

    def _check_settings(self, group):
        if group["lr"] < 0:
            raise ValueError(f"learning rate must be >= 0, got {group['lr']}")

    def _parameters(self):
        """(position, group, parameter) for every parameter, in order."""
        position = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield position, group, p
                position += 1

    def _trainable(self):
        """Like _parameters, but only the ones step() updates now."""
        for position, group, p in self._parameters():
            if p.requires_grad and p.grad is not None:
                if p.grad.shape != p.data.shape:
                    raise ValueError(f"parameter {position}: gradient shape {p.grad.shape} != shape {p.data.shape}")
                yield position, group, p

    def zero_grad(self):
        """Forget every gradient (backward() adds into .grad, so call this before it)."""
        for _, _, p in self._parameters():
            p.grad = None

    def step(self):
        raise NotImplementedError

    # ------------------------------------------------------------ checkpoints
    def state_dict(self):
        """{"state": {position: {name: NumPy array or number}}, "param_groups": [settings]}."""
        state = {pos: {k: (_device.to_numpy(v).copy() if _device.is_array(v) else v) for k, v in buffers.items()}
                 for pos, buffers in self.state.items()}
        groups = [{k: v for k, v in g.items() if k != "params"} | {"num_params": len(g["params"])}
                  for g in self.param_groups]
        return {"type": type(self).__name__, "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what state_dict() saved, onto the same parameters (same groups, shapes)."""
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is from {state_dict.get('type')!r}, this optimizer is {type(self).__name__}")
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [g["num_params"] for g in groups]
        if sizes != saved_sizes:
            raise ValueError(f"optimizer state has parameter groups of sizes {saved_sizes}, this optimizer {sizes}")
        params = {pos: p for pos, _, p in self._parameters()}
        new_state = {}
        for pos, buffers in state_dict["state"].items():
            pos = int(pos)
            if pos not in params:
                raise ValueError(f"optimizer state names parameter {pos}, but there are only {len(params)}")
            p = params[pos]
            new_state[pos] = {}
            for name, value in buffers.items():
                if _device.is_array(value):
                    if value.shape != p.data.shape:
                        raise ValueError(f"optimizer state {name!r} of parameter {pos} has shape {value.shape}, "
                                         f"the parameter {p.data.shape}")
                    value = _device.to_device(np.asarray(value, dtype=p.data.dtype), p.device)
                new_state[pos][name] = value
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "num_params"})
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and L2 weight decay (the paper's rule):

        g = grad + weight_decay * w;   v = momentum * v + g;   w = w - lr * v
        (nesterov: w = w - lr * (g + momentum * v))

    The paper writes v = 0.9 v - 0.0005 lr w - lr grad; w = w + v, which is the
    same rule with lr folded into v: the two agree while lr is constant.
    The paper's settings: lr=0.01, momentum=0.9, weight_decay=5e-4.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    def _check_settings(self, group):
        super()._check_settings(group)
        if not 0 <= group["momentum"] < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("nesterov momentum needs momentum > 0")

    def step(self):
        with autograd.observed_step("SGD.step"):
            self._update()

    def _update(self):
        for pos, group, p in self._trainable():
            velocity = None  # plain SGD (momentum 0) needs no buffer
            if group["momentum"] != 0:
                buffers = self.state.setdefault(pos, {})
                if "velocity" not in buffers:
                    buffers["velocity"] = p.xp.zeros_like(p.data)
                velocity = buffers["velocity"]
            backends.for_array(p.data).sgd_update(
                p.data, p.grad, velocity, group["lr"], group["momentum"],
                group["weight_decay"], group["nesterov"])
            p._mark_modified()


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; weight_decay is added to the
    gradient (L2), as in the original paper and PyTorch's Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_settings(self, group):
        super()._check_settings(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam betas must lie in [0, 1), got {group['betas']}")
        if group["eps"] <= 0:
            raise ValueError(f"Adam eps must be > 0, got {group['eps']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def step(self):
        with autograd.observed_step("Adam.step"):
            self._update()

    def _update(self):
        for pos, group, p in self._trainable():
            buffers = self.state.setdefault(pos, {})
            if "m" not in buffers:
                buffers.update(m=p.xp.zeros_like(p.data), v=p.xp.zeros_like(p.data), step=0)
            buffers["step"] += 1
            beta1, beta2 = group["betas"]
            backends.for_array(p.data).adam_update(
                p.data, p.grad, buffers["m"], buffers["v"], group["lr"], beta1, beta2,
                group["eps"], group["weight_decay"], buffers["step"])
            p._mark_modified()


# ------------------------------------------------------------------ schedules
class StepLR:
    """Multiply every group's lr by ``gamma`` every ``step_size`` epochs.

    Call ``step()`` once at the end of each epoch.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = gamma
        self.epoch = 0

    def step(self, metric=None):
        """End of an epoch (``metric`` is accepted and ignored, so fit can call every schedule alike)."""
        self.epoch += 1
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.gamma ** (self.epoch // self.step_size)

    def state_dict(self):
        return {"type": "StepLR", "epoch": self.epoch}

    def load_state_dict(self, state):
        _check_type(state, "StepLR")
        self.epoch = int(state["epoch"])


class ReduceLROnPlateau:
    """The paper's schedule: "divide the learning rate by 10 when the validation
    error rate stopped improving with the current learning rate".

    Call ``step(metric)`` once per epoch with the validation metric (mode="min":
    lower is better, e.g. error or loss; "max": higher is better). When it has
    not improved on the best value so far for more than ``patience`` epochs, every
    group's lr is multiplied by ``factor`` (not below ``min_lr``) and the count
    starts again after ``cooldown`` epochs. "Improved" means better than the best
    by more than ``threshold`` (relative: best * (1 - threshold) in mode "min").
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=3, threshold=1e-4, cooldown=0, min_lr=0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        if patience < 0 or cooldown < 0 or threshold < 0:
            raise ValueError("patience, cooldown and threshold must be >= 0")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, int(patience)
        self.threshold, self.cooldown, self.min_lr = threshold, int(cooldown), min_lr
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _improved(self, metric):
        if math.isinf(self.best):  # the first epoch always improves on "nothing yet"
            return True
        margin = self.threshold * abs(self.best)
        return metric < self.best - margin if self.mode == "min" else metric > self.best + margin

    def step(self, metric):
        if metric is None or not math.isfinite(float(metric)):
            raise ValueError(f"ReduceLROnPlateau.step needs a finite validation metric, got {metric!r}")
        metric = float(metric)
        if self._improved(metric):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:  # just reduced: give the new lr time before counting
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
            self.cooldown_left, self.bad_epochs = self.cooldown, 0

    def state_dict(self):
        return {"type": "ReduceLROnPlateau", "best": self.best, "bad_epochs": self.bad_epochs,
                "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state):
        _check_type(state, "ReduceLROnPlateau")
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.cooldown_left = int(state["cooldown_left"])


def _check_type(state, name):
    if not isinstance(state, dict) or state.get("type") != name:
        found = state.get("type") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"scheduler state is from {found!r}, this scheduler is {name}")
