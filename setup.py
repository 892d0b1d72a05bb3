"""minicnn's build. (Extensions are added by the kernel work: see csrc/ and src/.)"""

from setuptools import find_packages, setup

TRAIN_REQUIRES = ["mlxtend", "scikit-learn", "pillow", "matplotlib"]

setup(
    name="minicnn",
    version="0.1.0",
    description="A from-scratch CNN engine: hand-written CUDA kernels, a tiny autograd, AlexNet as in the paper",
    packages=find_packages(include=["minicnn", "minicnn.*"]),
    python_requires=">=3.9",
    install_requires=["numpy>=1.22"],
    extras_require={
        # what the main job (python -m minicnn train / transfer) needs: real data and pictures
        "train": TRAIN_REQUIRES,
        "test": TRAIN_REQUIRES + ["pytest", "hypothesis", "scikit-image"],
    },
)
