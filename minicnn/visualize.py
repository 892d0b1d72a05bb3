"""Pictures of what a network learned, after the paper's Figures 3 and 4.

conv1_filters: the first convolution's kernels as a grid of small images
(Figure 3: AlexNet's 96 11x11x3 kernels show oriented edges and colour blobs).
top5_predictions: a few test images, each with a bar chart of the network's
five most probable classes (Figure 4, left).
"""

import numpy as np

from . import functional as F
from .tensor import Tensor, no_grad


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # draw to files; no display needed
    import matplotlib.pyplot as plt
    return plt


def first_conv_weight(model):
    """The weight (O, C, kH, kW) of the model's first convolution, as a NumPy array."""
    for name, p in model.named_parameters():
        if p.ndim == 4:
            return p.numpy()
    raise ValueError("the model has no convolution weight (no 4-D parameter) to draw")


def filter_grid(weight, columns=None, pad=1):
    """Tile kernels (O, C, kH, kW) into one image (rows*kH + gaps, columns*kW + gaps[, 3]).

    Each kernel is scaled on its own to [0, 1] (its minimum black, its maximum
    white), as the paper's figure does, so weak and strong filters are both seen.
    3-channel kernels are shown in colour; other kernels show their first channel.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"filter_grid expects weights of shape (O, C, kH, kW), got {weight.shape}")
    o, c, kh, kw = weight.shape
    kernels = weight.transpose(0, 2, 3, 1) if c == 3 else weight[:, :1].transpose(0, 2, 3, 1)
    low = kernels.min(axis=(1, 2, 3), keepdims=True)
    high = kernels.max(axis=(1, 2, 3), keepdims=True)
    kernels = (kernels - low) / np.maximum(high - low, 1e-12)
    columns = columns or int(np.ceil(np.sqrt(o)))
    rows = int(np.ceil(o / columns))
    channels = kernels.shape[3]
    grid = np.ones((rows * (kh + pad) - pad, columns * (kw + pad) - pad, channels))  # white gaps
    for i in range(o):
        r, col = divmod(i, columns)
        grid[r * (kh + pad):r * (kh + pad) + kh, col * (kw + pad):col * (kw + pad) + kw] = kernels[i]
    return grid if channels == 3 else grid[:, :, 0]


def conv1_filters(model, path, columns=None):
    """Save the first convolution's kernels as a grid PNG (the paper's Figure 3)."""
    plt = _pyplot()
    weight = first_conv_weight(model)
    grid = filter_grid(weight, columns)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.5))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    ax.set_title(f"first-layer filters: {weight.shape[0]} kernels of {weight.shape[1]}x{weight.shape[2]}x{weight.shape[3]}")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _displayable(image):
    """A (C, H, W) image as something imshow draws: (H, W) or (H, W, 3) in [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    image = (image - image.min()) / max(image.max() - image.min(), 1e-12)  # undo any normalisation's range
    return image[0] if image.shape[0] == 1 else image[:3].transpose(1, 2, 0)


def top5_predictions(model, images, labels, class_names, path):
    """Save a figure: each image with its true label and the model's top-5 classes.

    images: (N, C, H, W) NumPy array, as the model takes them (N of about 4 to 8);
    labels: (N,) true class ids; class_names: the name of each class id.
    The bar of the true class is red when it is among the five, as in the paper.
    """
    plt = _pyplot()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"top5_predictions expects images of shape (N, C, H, W), got {images.shape}")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            probs = F.softmax(model(Tensor(images).to(model.device)), axis=1).numpy()
    finally:
        model.train(was_training)
    n, k = len(images), min(5, probs.shape[1])
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.4), squeeze=False)
    for i in range(n):
        top = np.argsort(-probs[i])[:k]
        axes[0, i].imshow(_displayable(images[i]), cmap="gray" if images.shape[1] == 1 else None)
        axes[0, i].set_title(f"true: {class_names[labels[i]]}", fontsize=9)
        axes[0, i].axis("off")
        colors = ["tab:red" if c == labels[i] else "tab:blue" for c in top]
        axes[1, i].barh(range(k)[::-1], probs[i, top], color=colors)
        axes[1, i].set_yticks(range(k)[::-1])
        axes[1, i].set_yticklabels([class_names[c] for c in top], fontsize=8)
        axes[1, i].set_xlim(0, 1)
        axes[1, i].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
