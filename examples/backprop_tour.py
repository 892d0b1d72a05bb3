# %% [markdown]
# # A tour of backprop in minicnn
#
# One small convolutional network, followed through one training step: the graph
# autograd records, the kernels the step launches (with their work and their time),
# the same step on the NumPy reference and on the CUDA kernels compiled for the CPU,
# a gradient check, and finally what the first layer learns.
#
# This file and `backprop_tour.ipynb` hold the same cells: the notebook is made from
# this script by `python scripts/make_notebook.py`, and a test runs both.
# Pictures go to `runs/backprop_tour/` under the folder it runs in.

# %%
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

import minicnn as mc
import minicnn.functional as F
from minicnn import visualize
from minicnn.backends import host

OUT = Path("runs") / "backprop_tour"
OUT.mkdir(parents=True, exist_ok=True)


def show(path):
    """In a notebook: the picture itself; in a script: where it was written."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    else:
        print("wrote", path)


# %% [markdown]
# ## 1. A tiny network, and a batch of real digits
#
# scikit-learn's 8x8 handwritten digits; two convolutions (the second in two groups,
# like AlexNet's two towers), max pooling and a linear classifier.

# %%
def tiny_network():
    mc.manual_seed(0)
    return mc.nn.Sequential(OrderedDict([
        ("conv1", mc.nn.Conv2d(1, 8, 3, padding=1)), ("relu1", mc.nn.ReLU()), ("pool1", mc.nn.MaxPool2d(2)),
        ("conv2", mc.nn.Conv2d(8, 16, 3, padding=1, groups=2)), ("relu2", mc.nn.ReLU()),
        ("pool2", mc.nn.MaxPool2d(2)), ("flatten", mc.nn.Flatten()), ("fc", mc.nn.Linear(16 * 2 * 2, 10)),
    ]))


model = tiny_network()
train, test = mc.data.digits(seed=0)
images, labels = next(iter(mc.data.DataLoader(train, batch_size=32)))     # NumPy arrays
print(mc.summary(model, (1, 8, 8)))
print("a batch:", images.shape, images.dtype, "labels", labels[:10], "...")

# %% [markdown]
# ## 2. The graph of one step
#
# Every op is one `Function`; applying it records a node (`grad_fn`), and `backward()`
# walks the nodes from the loss back to the parameters. `record_gradient_norms` makes
# each node remember the norm of the gradient that reached it, so the drawing shows
# how large each gradient is.

# %%
loss = F.cross_entropy(model(mc.Tensor(images)), labels)
print("loss:", loss.item(), " its node:", loss.grad_fn, " feeding it:", loss.grad_fn.next_functions)
mc.record_gradient_norms(loss)
loss.backward()
dot = mc.draw_graph(loss, OUT / "graph.png", model=model)
print(f"the drawing: {dot.count('shape=box')} ops and {dot.count('shape=ellipse')} parameters")
show(OUT / "graph.png")

# %% [markdown]
# ## 3. What the step launches: `mc.trace`
#
# Inside `with mc.trace()` every op's forward and backward, every kernel launch and
# every GEMM is recorded with its shapes, FLOPs, bytes and wall time. The summary
# groups the time by op and by kernel. On the `kernels` backend (the csrc kernels
# compiled for the CPU) conv1's forward is `im2col` then a GEMM; its backward has no
# `col2im`, because the images need no gradient (`ctx.needs_input_grad`), while conv2's
# backward has one. On the NumPy reference the "kernels" are its methods, and conv1's
# `conv2d_backward` returns no image gradient.

# %%
mc.set_cpu_backend("kernels" if host.available() else "reference")
print("CPU backend:", mc.get_cpu_backend())
optimizer = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def step(model, optimizer, images, labels):
    loss = F.cross_entropy(model(mc.Tensor(images)), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


with mc.trace(model=model) as t:
    step(model, optimizer, images, labels)
print(t.summary())
for name in ("conv1", "conv2"):
    for phase in ("forward", "backward"):
        launches = [r for r in t.launches if r["module"] == name and r["phase"] == phase]
        print(f"{name} {phase:8}: " + " -> ".join(r["kernel"] + (f" (returns {len(r['outputs'])} arrays)"
                                                               if r["outputs"] else "") for r in launches))
print()
print("\n".join(str(t).splitlines()[:8]), "\n...")

# %% [markdown]
# ## 4. The same step on two backends
#
# The NumPy reference (`reference`) is the readable definition; `kernels` runs the
# csrc CUDA kernels compiled for the CPU (the extension `minicnn._host`). Both start
# from the same weights and must agree to float32 rounding.

# %%
def traced_step_on(backend):
    mc.set_cpu_backend(backend)
    net = tiny_network()
    opt = mc.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    with mc.trace(model=net) as trace:
        loss = step(net, opt, images, labels)
    return loss.item(), net, trace


backend_before = mc.get_cpu_backend()
if not host.available():
    print("the 'kernels' backend is not available here: minicnn._host is not built "
          "(pip install -e . builds it), so only the reference runs:")
    loss_ref, _, trace_ref = traced_step_on("reference")
    print(f"reference loss {loss_ref:.6f}")
else:
    loss_ref, net_ref, trace_ref = traced_step_on("reference")
    loss_k, net_k, trace_k = traced_step_on("kernels")
    print(f"loss: reference {loss_ref:.6f}, kernels {loss_k:.6f}")
    for (name, p_ref), (_, p_k) in zip(net_ref.named_parameters(), net_k.named_parameters()):
        print(f"{name:13} after the step, largest difference {np.abs(p_ref.numpy() - p_k.numpy()).max():.2e}")
    for trace, backend in ((trace_ref, "reference"), (trace_k, "kernels")):
        top = trace.summary().by_kernel[:3]
        print(f"{backend:9}: {trace.seconds * 1e3:6.1f} ms, most time in "
              + ", ".join(f"{g['name']} {g['share']:.0%}" for g in top))
mc.set_cpu_backend(backend_before)

# %% [markdown]
# ## 5. Checking a gradient
#
# `mc.gradcheck` compares an op's backward with central differences in float64. A
# backward with a mistake (here a derivative of x^3 written as 2x^2) fails, naming the
# worst entry.

# %%
rng = np.random.default_rng(0)
x = mc.Tensor(rng.standard_normal((2, 6, 4, 4)), requires_grad=True)
print("local_response_norm:", mc.gradcheck(lambda x: F.local_response_norm(x, size=3, alpha=0.1, k=1.0), [x]))


class WrongCube(mc.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 2 * x ** 2          # wrong: d x^3 / dx = 3 x^2


try:
    mc.gradcheck(WrongCube.apply, [mc.Tensor(rng.standard_normal(3), requires_grad=True)])
except AssertionError as e:
    print("WrongCube fails, as it should:", str(e).splitlines()[0])

# %% [markdown]
# ## 6. What conv1 learns
#
# A few epochs on the digits, then conv1's eight 3x3 filters on one shared scale
# (grey is zero), beside what training changed in them.

# %%
initial = model.conv1.weight.numpy().copy()
loader = mc.data.DataLoader(train, batch_size=32, shuffle=True, seed=0)
history = mc.fit(model, loader, epochs=3, optimizer=optimizer, verbose=False)
result = mc.evaluate(model, mc.data.DataLoader(test, batch_size=256))
print("training loss by epoch:", [round(v, 3) for v in history.train_loss], " test:", result)
visualize.conv1_filters(model, OUT / "conv1_filters.png", epochs=3, initial=initial)
show(OUT / "conv1_filters.png")
