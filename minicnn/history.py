"""History: what fit measured, epoch by epoch, and its learning curves.

Its own module so that checkpoints (checkpoint.py) can save and load a history
without importing the training loop: fit appends to it, mc.save writes to_dict(),
mc.load gives it back with from_dict().
"""

import json

from .files import save_figure


class History:
    """What fit measured, one entry per epoch in each list.

    epoch (1-based), lr (of the first parameter group), seconds, train_loss,
    train_top1, train_top5 (averaged over the epoch's batches, in training mode,
    i.e. with dropout and augmentation, as Keras reports them), and val_loss,
    val_top1, val_top5 (None without a validation loader).
    """

    KEYS = ("epoch", "lr", "seconds", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")

    def __init__(self):
        for key in self.KEYS:
            setattr(self, key, [])

    def append(self, **values):
        if set(values) != set(self.KEYS):
            raise ValueError(f"History.append needs exactly {self.KEYS}")
        for key in self.KEYS:
            getattr(self, key).append(values[key])

    def __len__(self):
        return len(self.epoch)

    def to_dict(self):
        return {key: list(getattr(self, key)) for key in self.KEYS}

    @classmethod
    def from_dict(cls, data):
        history = cls()
        missing = [k for k in cls.KEYS if k not in data]
        if missing:
            raise ValueError(f"history is missing the entries {missing}")
        for key in cls.KEYS:
            setattr(history, key, list(data[key]))
        return history

    def __repr__(self):
        return "History(" + json.dumps(self.to_dict()) + ")"

    def plot(self, path, val_name="validation"):
        """Draw the learning curves to a PNG: loss, and top-1 / top-5 error in percent, per
        epoch, for training and for the held-out set (called ``val_name``: "test" when it
        is the test set). Top-5 is left out when it is 0 throughout (5 classes or fewer)."""
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator, PercentFormatter

        if len(self) == 0:
            raise ValueError("History.plot: nothing to draw, the history is empty")
        fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
        panels = ((ax_loss, ("loss",), "loss", "loss (cross-entropy)", 1),
                  (ax_err, ("top1", "top5"), "error rate", "error", 100))
        for ax, keys, title, ylabel, scale in panels:
            for key in keys:
                for split, name, style in (("train", "train", "-"), ("val", val_name, "--")):
                    values = getattr(self, f"{split}_{key}")
                    if any(v is None for v in values):
                        continue
                    if key == "top5" and not any(values):
                        continue
                    label = name + {"loss": " loss", "top1": " top-1", "top5": " top-5"}[key]
                    ax.plot(self.epoch, [v * scale for v in values], style, marker="o", markersize=3, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        ax_err.set_ylim(bottom=0)
        ax_err.yaxis.set_major_formatter(PercentFormatter(decimals=1 if ax_err.get_ylim()[1] < 10 else 0))
        fig.tight_layout()
        save_figure(fig, path, dpi=100)
        plt.close(fig)
