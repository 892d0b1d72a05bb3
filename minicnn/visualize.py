"""Pictures of what a network learned, after the paper's Figures 3 and 4.

conv1_filters: the first convolution's kernels as a grid of small images
(Figure 3: AlexNet's 96 11x11x3 kernels show oriented edges and colour blobs).
top5_predictions: a few test images, each with a bar chart of the network's
five most probable classes (Figure 4, left).
"""

import numpy as np

from . import functional as F
from .files import save_figure
from .tensor import Tensor, no_grad


def pyplot():
    """matplotlib.pyplot, set to draw to files."""
    import matplotlib
    matplotlib.use("Agg")  # draw to files; no display needed
    import matplotlib.pyplot as plt
    return plt


def first_conv(model):
    """(name, weight (O, C, kH, kW) as a NumPy array) of the model's first convolution."""
    for name, p in model.named_parameters():
        if p.ndim == 4:
            return name.rsplit(".", 1)[0], p.numpy()
    raise ValueError("the model has no convolution weight (no 4-D parameter) to draw")


def first_conv_weight(model):
    """The weight (O, C, kH, kW) of the model's first convolution, as a NumPy array."""
    return first_conv(model)[1]


def filter_grid(weight, columns=None, pad=1):
    """Tile kernels (O, C, kH, kW) into one image (rows*kH + gaps, columns*kW + gaps[, 3]).

    All kernels share one scale, as in the paper's Figure 3: 0.5 (grey) is a zero
    weight, 0 and 1 the layer's largest negative and positive weights in magnitude,
    so a strong filter looks strong and a weak one faint (scaling each kernel on its
    own would blow up noise to full contrast). 3-channel kernels are shown in
    colour; other kernels show their first channel.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"filter_grid expects weights of shape (O, C, kH, kW), got {weight.shape}")
    o, c, kh, kw = weight.shape
    kernels = weight.transpose(0, 2, 3, 1) if c == 3 else weight[:, :1].transpose(0, 2, 3, 1)
    largest = max(np.abs(kernels).max(), 1e-12)
    kernels = 0.5 + 0.5 * kernels / largest
    columns = columns or int(np.ceil(np.sqrt(o)))
    rows = int(np.ceil(o / columns))
    channels = kernels.shape[3]
    grid = np.ones((rows * (kh + pad) - pad, columns * (kw + pad) - pad, channels))  # white gaps
    for i in range(o):
        r, col = divmod(i, columns)
        grid[r * (kh + pad):r * (kh + pad) + kh, col * (kw + pad):col * (kw + pad) + kw] = kernels[i]
    return grid if channels == 3 else grid[:, :, 0]


def conv1_filters(model, path, columns=None, epochs=None, initial=None):
    """Save the first convolution's kernels as a grid PNG (the paper's Figure 3), on one
    shared scale; the title names the layer and, when given, the epochs trained.

    initial: the same layer's weights before training (O, C, kH, kW). Then a second
    grid shows what training changed (weights - initial), on its own shared scale: where
    training moved the kernels little from a random start (small digits, few epochs),
    the first grid still looks like its random start and the second shows what was learned.
    """
    plt = pyplot()
    name, weight = first_conv(model)
    panels = [(weight, f"{name}: {weight.shape[0]} filters of {'x'.join(map(str, weight.shape[1:]))}"
                       + (f", after {epochs} epoch{'s' * (epochs != 1)} of training" if epochs is not None else ""))]
    if initial is not None:
        initial = np.asarray(initial, dtype=weight.dtype)
        if initial.shape != weight.shape:
            raise ValueError(f"conv1_filters: initial has shape {initial.shape}, the layer {weight.shape}")
        change = np.linalg.norm(weight - initial) / max(np.linalg.norm(initial), 1e-12)
        panels.append((weight - initial, f"what training changed: weights - initial ({change:.0%} of their norm)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 6.8), squeeze=False)
    for ax, (values, title) in zip(axes[0], panels):
        grid = filter_grid(values, columns)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\none scale for all: grey 0, white/black +-{np.abs(values).max():.3g}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _displayable(image):
    """A (C, H, W) image as something imshow draws: (H, W) or (H, W, 3) in [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    image = (image - image.min()) / max(image.max() - image.min(), 1e-12)  # undo any normalisation's range
    return image[0] if image.shape[0] == 1 else image[:3].transpose(1, 2, 0)


def predict_probabilities(model, images, batch_size=250):
    """Softmax of ``model`` on images (N, C, H, W) in eval mode, as a NumPy (N, classes) array."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return np.concatenate([F.softmax(model(Tensor(np.asarray(images[i:i + batch_size], np.float32))
                                                   .to(model.device)), axis=1).numpy()
                                   for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def pick_examples(predicted, labels, count=6, mistakes=2):
    """Indices of ``count`` examples spread over the set, up to ``mistakes`` of them
    misclassified ones when there are any (a figure of successes only hides what fails)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    wrong, right = np.flatnonzero(predicted != labels), np.flatnonzero(predicted == labels)

    def spread(indices, n):
        return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).astype(int)] if len(indices) else indices

    picked_wrong = spread(wrong, mistakes)
    picked_right = spread(right, count - len(picked_wrong))
    if len(picked_right) + len(picked_wrong) < count:   # too few right ones: more mistakes fill the figure
        picked_wrong = spread(wrong, count - len(picked_right))
    return np.sort(np.concatenate([picked_right, picked_wrong]).astype(int))


def top5_predictions(model, images, labels, class_names, path, title=None):
    """Save a figure: each image titled with its true and predicted class, and a bar
    chart of the model's five most probable classes.

    images: (N, C, H, W) NumPy array, as the model takes them (N of about 4 to 8);
    labels: (N,) true class ids; class_names: the name of each class id.
    The true class's bar is red (the paper's figure); when it is not among the five,
    a sixth bar below a gap shows it with its probability and rank.
    """
    fig = top5_figure(model, images, labels, class_names, title)
    save_figure(fig, path, dpi=100)
    pyplot().close(fig)


def top5_figure(model, images, labels, class_names, title=None):
    """top5_predictions' figure, as a matplotlib Figure (TensorBoard's callback logs it)."""
    plt = pyplot()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"top5_predictions expects images of shape (N, C, H, W), got {images.shape}")
    labels = np.asarray(labels)
    probs = predict_probabilities(model, images)
    n, k = len(images), min(5, probs.shape[1])
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 5.0), squeeze=False)
    for i in range(n):
        order = np.argsort(-probs[i], kind="stable")
        top, predicted, truth = order[:k], order[0], int(labels[i])
        right = predicted == truth
        axes[0, i].imshow(_displayable(images[i]), cmap="gray" if images.shape[1] == 1 else None)
        axes[0, i].set_title(f"true: {class_names[truth]}\npredicted: {class_names[predicted]}", fontsize=9,
                             color="black" if right else "tab:red")
        axes[0, i].axis("off")
        names = [class_names[c] for c in top]
        values = list(probs[i, top])
        colors = ["tab:red" if c == truth else "tab:blue" for c in top]
        if truth not in top:  # the true class, wherever it ranks, under a gap
            rank = int(np.flatnonzero(order == truth)[0]) + 1
            names += ["", f"{class_names[truth]} (#{rank})"]
            values += [0.0, probs[i, truth]]
            colors += ["white", "tab:red"]
        rows = np.arange(len(names))[::-1]
        axes[1, i].barh(rows, values, color=colors)
        axes[1, i].set_yticks(rows)
        axes[1, i].set_yticklabels(names, fontsize=8)
        axes[1, i].set_xlim(0, 1)
        axes[1, i].tick_params(axis="x", labelsize=7)
    fig.suptitle(title or "test images: true and predicted class, the five most probable classes "
                 "(true class in red)", fontsize=10)
    fig.tight_layout()
    return fig
