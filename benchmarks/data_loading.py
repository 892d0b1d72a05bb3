"""Images per second of the paper's training augmentation from a folder of JPEGs, by worker count.

    python benchmarks/data_loading.py                        # 0, 1 and 2 workers, 512 photos
    python benchmarks/data_loading.py --workers 0 2 4 --images 1024 --json out.json
    python benchmarks/data_loading.py --folder DIR           # your own folder (one sub-folder per class)

What is timed is what a DataLoader does for mc.fit on photos: decode each JPEG and resize it
to 256x256 (image_folder), then the paper's augmentation (section 4.1) at 227x227: a random
227x227 crop, a horizontal flip half the time, PCA colour noise (std 0.1), normalisation; and
stack the batch. No model runs: this is the data side alone.

The folder is made from the photographs that ship with scikit-image and scikit-learn
(astronaut, chelsea, coffee, ... and sklearn's china and flower), each written many times
as a different random crop of itself, as JPEGs of 300 to 500 pixels a side, in two classes.

For each worker count the loader runs one epoch untimed (which also starts its workers and
warms the page cache), then --epochs timed epochs; the rate is images / median epoch time.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # the installed minicnn (this script's folder, not the checkout, is first on sys.path)
    import minicnn  # noqa: F401
except ImportError:  # a checkout that was never installed: use the source tree beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minicnn.data as D  # noqa: E402

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def source_photos():
    """The RGB photographs that ship with scikit-image and scikit-learn, as uint8 (H, W, 3) arrays."""
    photos = []
    try:
        from skimage import data
        photos += [getattr(data, name)() for name in SKIMAGE_PHOTOS if hasattr(data, name)]
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images
        photos += list(load_sample_images().images)
    except ImportError:
        pass
    photos = [p for p in photos if p.ndim == 3 and p.shape[2] == 3]
    if not photos:
        raise SystemExit("no photographs to make the folder from: pip install scikit-image or scikit-learn")
    return photos


def make_folder(root, count, seed=0):
    """``count`` JPEGs in root/<class>/: random crops (300..500 a side) of the shipped photographs."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    photos = source_photos()
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(300, 501))
        ch, cw = min(side, h), min(side, w)
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        Image.fromarray(photo[top:top + ch, left:left + cw]).save(root / "ab"[i % 2] / f"{i:05d}.jpg", quality=90)
    return root


def measure(folder, workers, batch_size, epochs):
    dataset = D.image_folder(str(folder), image_size=256)
    augment = D.Compose([D.RandomCrop(227), D.RandomHorizontalFlip(), D.fit_pca_lighting(dataset, max_images=64),
                         D.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = D.DataLoader(dataset, batch_size=batch_size, shuffle=True, seed=0, transform=augment,
                          num_workers=workers)
    try:
        for _ in loader:            # untimed: starts the workers, warms the page cache
            pass
        seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            for images, _ in loader:
                assert images.shape[1:] == (3, 227, 227)
            seconds.append(time.perf_counter() - start)
    finally:
        loader.close()
    return len(dataset), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--images", type=int, default=512, help="JPEGs in the folder made (default 512)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per worker count (default 3)")
    parser.add_argument("--folder", help="an existing folder of photos to read instead of making one")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder) if args.folder else make_folder(Path(scratch) / "photos", args.images)
        rows = []
        for workers in args.workers:
            count, seconds = measure(folder, workers, args.batch_size, args.epochs)
            median = statistics.median(seconds)
            rows.append({"workers": workers, "images": count, "epoch_seconds": seconds,
                         "images_per_second": count / median})
            print(f"{workers} workers: {count / median:8.1f} images/s  (median of {len(seconds)} epochs of "
                  f"{count} images: {median:.2f} s; range {min(seconds):.2f}..{max(seconds):.2f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"batch_size": args.batch_size, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
