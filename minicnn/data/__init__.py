"""Data for training: datasets, the DataLoader, and the paper's augmentation.

    import minicnn.data as D
    train, test = D.mnist5k()
    loader = D.DataLoader(train, batch_size=64, shuffle=True, seed=0,
                          transform=D.Compose([D.RandomCrop(28, padding=2), D.Normalize([0.13], [0.31])]))
    for images, labels in loader: ...   # float32 (N, C, H, W), int64 (N,)
"""

from .dataset import Dataset, ArrayDataset, Subset, split, stack
from .loader import DataLoader
from .sources import (mnist5k, digits, image_folder, ImageFolder, ImageFiles, load_image, file_digest, cifar10,
                      CIFAR10_CLASSES)
from .transforms import (Compose, Resize, CenterCrop, RandomCrop, RandomHorizontalFlip, Normalize,
                         PCALighting, TenCrop, fit_normalize, fit_pca_lighting)
