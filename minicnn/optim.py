"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedules (StepLR, LinearLR,
CosineAnnealingLR, SequentialLR, ReduceLROnPlateau), with PyTorch's names, defaults and formulas.

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

import bisect
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
        name = type(self).__name__
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"{name} betas must lie in [0, 1), got {group['betas']}")
        if group["eps"] <= 0:
            raise ValueError(f"{name} eps must be > 0, got {group['eps']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def step(self):
        with autograd.observed_step(f"{type(self).__name__}.step"):
            self._update()

    def _update(self):
        for pos, group, p in self._trainable():
            buffers = self.state.setdefault(pos, {})
            if "m" not in buffers:
                buffers.update(m=p.xp.zeros_like(p.data), v=p.xp.zeros_like(p.data), step=0)
            buffers["step"] += 1
            self._update_one(backends.for_array(p.data), p, buffers, group)
            p._mark_modified()

    def _update_one(self, backend, p, buffers, group):
        beta1, beta2 = group["betas"]
        backend.adam_update(p.data, p.grad, buffers["m"], buffers["v"], group["lr"], beta1, beta2,
                            group["eps"], group["weight_decay"], buffers["step"])


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), PyTorch's: Adam whose weight decay is decoupled from the
    gradient. Each step first shrinks the weights, w *= 1 - lr * weight_decay, then takes Adam's
    step on the plain gradient, so the decay is the same for every weight instead of being divided
    by Adam's running RMS (with Adam's L2 a weight with large gradients is barely decayed).
    PyTorch's defaults, weight_decay=1e-2 among them."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _update_one(self, backend, p, buffers, group):
        beta1, beta2 = group["betas"]
        backend.adamw_update(p.data, p.grad, buffers["m"], buffers["v"], group["lr"], beta1, beta2,
                             group["eps"], group["weight_decay"], buffers["step"])


class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6e), PyTorch's: divide the gradient by a running root mean
    square of it, so every weight moves at about the same rate whatever its gradient's scale:

        g = grad + weight_decay * w;   square_avg = alpha * square_avg + (1 - alpha) * g^2
        avg = sqrt(square_avg) + eps   (centered: sqrt(square_avg - grad_avg^2) + eps, with
                                        grad_avg = alpha * grad_avg + (1 - alpha) * g)
        w -= lr * g / avg              (momentum: b = momentum * b + g / avg;  w -= lr * b)

    PyTorch's defaults: lr=1e-2, alpha=0.99, eps=1e-8 (Keras's RMSprop has rho=0.9, eps=1e-7,
    and eps inside the square root).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=bool(centered)))

    def _check_settings(self, group):
        super()._check_settings(group)
        for setting in ("alpha", "eps", "weight_decay", "momentum"):
            if group[setting] < 0:
                raise ValueError(f"RMSprop {setting} must be >= 0, got {group[setting]}")
        if group["alpha"] > 1:
            raise ValueError(f"RMSprop alpha must lie in [0, 1], got {group['alpha']}")

    def step(self):
        with autograd.observed_step("RMSprop.step"):
            self._update()

    def _update(self):
        for pos, group, p in self._trainable():
            buffers = self.state.setdefault(pos, {})
            if "square_avg" not in buffers:
                buffers.update(square_avg=p.xp.zeros_like(p.data), step=0)
            if group["centered"] and "grad_avg" not in buffers:
                buffers["grad_avg"] = p.xp.zeros_like(p.data)
            if group["momentum"] > 0 and "momentum_buffer" not in buffers:
                buffers["momentum_buffer"] = p.xp.zeros_like(p.data)
            buffers["step"] += 1
            backends.for_array(p.data).rmsprop_update(
                p.data, p.grad, buffers["square_avg"], buffers.get("grad_avg") if group["centered"] else None,
                buffers.get("momentum_buffer") if group["momentum"] > 0 else None, group["lr"], group["alpha"],
                group["eps"], group["weight_decay"], group["momentum"], group["centered"])
            p._mark_modified()


# ------------------------------------------------------------------ schedules
class EpochSchedule:
    """A schedule whose lr is a function of the epoch count alone: every group's lr is
    ``lr_at(its initial lr, epoch)``, set at once (epoch 0) and after every ``step()``.
    The closed forms of PyTorch's schedulers; call ``step()`` once at the end of each epoch
    (fit does, passing a metric that these schedules ignore)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.epoch = 0
        self._apply()

    def lr_at(self, initial_lr, epoch):
        raise NotImplementedError

    def _apply(self):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(group["initial_lr"], self.epoch)

    def step(self, metric=None):
        """End of an epoch (``metric`` is accepted and ignored, so fit can call every schedule alike)."""
        self.epoch += 1
        self._apply()

    def state_dict(self):
        return {"type": type(self).__name__, "epoch": self.epoch}

    def load_state_dict(self, state):
        _check_type(state, type(self).__name__)
        self.epoch = int(state["epoch"])


class StepLR(EpochSchedule):
    """Multiply every group's lr by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, initial_lr, epoch):
        return initial_lr * self.gamma ** (epoch // self.step_size)


class LinearLR(EpochSchedule):
    """PyTorch's LinearLR: the lr goes in a straight line from ``start_factor`` times the initial lr
    to ``end_factor`` times it over ``total_iters`` epochs, then stays: a linear warm-up
    (LinearLR(opt, start_factor=0.1, total_iters=5)), or a linear decay."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR needs 0 < start_factor <= 1 and 0 <= end_factor <= 1, got "
                             f"{start_factor} and {end_factor}")
        if int(total_iters) < 1:
            raise ValueError(f"total_iters must be >= 1, got {total_iters}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, int(total_iters)
        super().__init__(optimizer)

    def lr_at(self, initial_lr, epoch):
        done = min(epoch, self.total_iters) / self.total_iters
        return initial_lr * (self.start_factor + (self.end_factor - self.start_factor) * done)


class CosineAnnealingLR(EpochSchedule):
    """PyTorch's CosineAnnealingLR (SGDR without restarts, Loshchilov & Hutter 2017): the lr follows
    half a cosine from the initial lr down to ``eta_min`` over ``T_max`` epochs,

        lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    and (as in PyTorch) back up along the same cosine if training goes on past T_max. With a
    warm-up first: SequentialLR([LinearLR(opt, 0.1, total_iters=w), CosineAnnealingLR(opt, T_max=E - w)],
    milestones=[w])."""

    def __init__(self, optimizer, T_max, eta_min=0.0):  # noqa: N803 (PyTorch's argument name)
        if int(T_max) < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        if eta_min < 0:
            raise ValueError(f"eta_min must be >= 0, got {eta_min}")
        self.T_max, self.eta_min = int(T_max), eta_min
        super().__init__(optimizer)

    def lr_at(self, initial_lr, epoch):
        return self.eta_min + (initial_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class SequentialLR(EpochSchedule):
    """PyTorch's SequentialLR: ``schedulers[0]`` until epoch ``milestones[0]``, then ``schedulers[1]``
    counting its epochs from 0 there, and so on. The usual use is a warm-up before a decay:

        warmup = LinearLR(opt, start_factor=0.1, total_iters=3)
        cosine = CosineAnnealingLR(opt, T_max=epochs - 3)
        schedule = SequentialLR(opt, [warmup, cosine], milestones=[3])
    """

    def __init__(self, optimizer, schedulers, milestones):
        schedulers, milestones = list(schedulers), [int(m) for m in milestones]
        if not schedulers or len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers, got {len(schedulers)} "
                             f"schedulers and milestones {milestones}")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, EpochSchedule):
                raise TypeError(f"SequentialLR: scheduler {i} is a {type(scheduler).__name__}; it takes schedules "
                                "of the epoch alone (StepLR, LinearLR, CosineAnnealingLR, ...)")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} belongs to another optimizer")
        if milestones != sorted(milestones) or (milestones and milestones[0] < 0):
            raise ValueError(f"SequentialLR milestones must be increasing and >= 0, got {milestones}")
        self.schedulers, self.milestones = schedulers, milestones
        super().__init__(optimizer)

    def lr_at(self, initial_lr, epoch):
        active = bisect.bisect_right(self.milestones, epoch)
        start = self.milestones[active - 1] if active > 0 else 0
        return self.schedulers[active].lr_at(initial_lr, epoch - start)


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
