"""Keras's transfer-learning tutorial (keras.io/guides/transfer_learning), step for step, in minicnn.

    python examples/transfer_like_keras.py          # about a minute on two cores; writes runs/transfer_like_keras/

Each step shows the Keras line it stands for in a comment. Two things differ, and say so:

- Keras downloads ImageNet weights; minicnn downloads nothing. So step 0 makes its own
  "ImageNet": a VGG16-style base (conv-BatchNorm-ReLU blocks named like Keras's block1_conv1 ...)
  is pretrained on a few textures and scans that ship with scikit-image (brick, grass, retina ...),
  and its weights are saved to a file, which step 2 loads as Keras's weights="imagenet" would.
  With real weights: mc.models.vgg16(include_top=False) and
  mc.weights.load(base, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").
- Keras's cats and dogs are a download too; here the folder of photos is made from the photos
  that ship with scikit-image and scikit-learn: crops of Chelsea the cat against crops of a
  coffee cup, a rocket, an astronaut, a Chinese temple and a flower.
"""

import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this checkout's minicnn, if not installed

import minicnn as mc                       # noqa: E402
from minicnn import nn, transfer           # noqa: E402

IMG_SIZE = 96          # the tutorial's 160, smaller so that the whole script runs in about a minute on a CPU
BATCH_SIZE = 8
OUT = Path("runs/transfer_like_keras")


def crops(photo, count, rng):
    """``count`` random square crops (60-100% of the short side) of a photo, some mirrored."""
    from PIL import Image
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    h, w = photo.shape[:2]
    for _ in range(count):
        side = int(rng.uniform(0.6, 1.0) * min(h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        image = Image.fromarray(photo[top:top + side, left:left + side, :3]).resize((128, 128), Image.BILINEAR)
        yield image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def photo_folder(root, classes, per_photo, seed):
    """root/<class>/<n>.jpg: crops of each class's photos (functions returning an array)."""
    rng = np.random.default_rng(seed)
    for name, photos in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for p, photo in enumerate(photos):
            for i, image in enumerate(crops(photo(), per_photo, rng)):
                image.save(root / name / f"{p}_{i:03d}.jpg", quality=90)
    return root


def vgg_style_base():
    """A small VGG16-BN-style feature extractor, Keras's layer names: three blocks of two 3x3
    convolutions (each followed by BatchNorm and ReLU) and a 2x2 max pooling."""
    layers, channels = [], 3
    for block, width in enumerate((16, 32, 64), start=1):
        for conv in (1, 2):
            layers += [(f"block{block}_conv{conv}", nn.Conv2d(channels, width, 3, padding=1)),
                       (f"block{block}_bn{conv}", nn.BatchNorm2d(width)), (f"block{block}_relu{conv}", nn.ReLU())]
            channels = width
        layers.append((f"block{block}_pool", nn.MaxPool2d(2, 2)))
    return nn.Sequential(OrderedDict(layers))


def main():
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images
    mc.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="transfer_like_keras_"))
    normalize = mc.data.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])     # keras.layers.Rescaling(1 / 127.5, offset=-1)
    augment = mc.data.Compose([mc.data.RandomHorizontalFlip(), normalize])   # keras.layers.RandomFlip("horizontal")

    # ---- 0. the stand-in for ImageNet pretraining (see the docstring): textures and scans, six classes
    textures = {name: [getattr(skdata, name)] for name in
                ("brick", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "retina")}
    pretext = mc.data.image_folder(str(photo_folder(scratch / "textures", textures, 16, seed=1)), image_size=IMG_SIZE)
    net = nn.Sequential(OrderedDict(base=vgg_style_base(), pool=nn.GlobalAvgPool2d(), fc=nn.Linear(64, 6)))
    pretraining = mc.fit(net, mc.data.DataLoader(pretext, BATCH_SIZE, shuffle=True, seed=0, transform=augment),
                         epochs=2, optimizer=mc.optim.Adam(net.parameters(), lr=3e-3), verbose=False)
    print(f"pretrained the base on {len(pretext)} texture crops of {pretext.num_classes} classes: training "
          f"accuracy {1 - pretraining.train_top1[-1]:.1%}")
    mc.weights.save_npz(net.base, scratch / "pretrained_base.npz")

    # ---- 1. the data: keras.utils.image_dataset_from_directory(directory, validation_split=0.2,
    #         subset="both", seed=1337, image_size=(IMG_SIZE, IMG_SIZE), batch_size=BATCH_SIZE)
    china, flower = load_sample_images().images
    classes = {"cat": [skdata.chelsea], "not_cat": [skdata.coffee, skdata.rocket, skdata.astronaut,
                                                    lambda: china, lambda: flower]}
    root = photo_folder(scratch / "cats", {"cat": classes["cat"] * 5, "not_cat": classes["not_cat"]}, 10, seed=2)
    train_ds, validation_ds = mc.data.image_folder(str(root), image_size=IMG_SIZE, validation_split=0.2, seed=1337)
    print(f"classes {train_ds.class_names}: {len(train_ds)} training and {len(validation_ds)} validation images")
    train = mc.data.DataLoader(train_ds, BATCH_SIZE, shuffle=True, seed=0, transform=augment)
    validation = mc.data.DataLoader(validation_ds, 16, transform=normalize)

    # ---- 2. base_model = keras.applications.Xception(weights="imagenet", input_shape=(IMG_SIZE, IMG_SIZE, 3),
    #                                                  include_top=False)
    base_model = vgg_style_base()
    mc.weights.load(base_model, scratch / "pretrained_base.npz")

    # ---- 3. base_model.trainable = False  (its BatchNorm layers run in inference mode, as in Keras)
    base_model.trainable = False

    # ---- 4. inputs -> base_model(x, training=False) -> GlobalAveragePooling2D -> Dropout(0.2) -> Dense(1)
    model = nn.Sequential(OrderedDict(base=base_model, pool=nn.GlobalAvgPool2d(), dropout=nn.Dropout(0.2),
                                      dense=nn.Linear(64, 1)))
    trainable, frozen = transfer.count_parameters(model)
    print(f"trainable parameters {trainable:,}, frozen {frozen:,}")

    # ---- 5. model.compile(optimizer=keras.optimizers.Adam(), loss=BinaryCrossentropy(from_logits=True),
    #                       metrics=[BinaryAccuracy()]);  model.fit(train_ds, epochs=..., validation_data=validation_ds)
    loss = transfer.binary_cross_entropy_loss            # one logit, class 1 ("not_cat") when it is > 0
    history = mc.fit(model, train, epochs=6, optimizer=mc.optim.Adam(model.parameters(), lr=1e-2),
                     val_loader=validation, loss_fn=loss, verbose=False)
    print(f"top only: validation accuracy {1 - history.val_top1[-1]:.1%} after {len(history.val_top1)} epochs")

    # ---- 6. fine-tuning: base_model.trainable = True; for layer in base_model.layers[:fine_tune_at]:
    #         layer.trainable = False; model.compile(optimizer=keras.optimizers.Adam(1e-5), ...); model.fit(...)
    base_model.trainable = True
    fine_tune_at = list(base_model._modules).index("block3_conv1")        # unfreeze the last block
    for layer in list(base_model.children())[:fine_tune_at]:
        layer.trainable = False                  # (transfer.fine_tune_from(model, "block3_conv1") does both lines)
    trainable, frozen = transfer.count_parameters(model)
    history = mc.fit(model, train, epochs=3, optimizer=mc.optim.Adam(model.parameters(), lr=1e-5),
                     val_loader=validation, loss_fn=loss, verbose=False)
    print(f"fine-tuned from block3_conv1 ({trainable:,} trainable parameters): validation accuracy "
          f"{1 - history.val_top1[-1]:.1%}")

    # ---- 7. model.evaluate(validation_ds); model.save("model.keras"); keras.models.load_model("model.keras")
    evaluation = mc.evaluate(model, validation, loss_fn=loss)
    print(f"evaluate: loss {evaluation.loss:.4f}, accuracy {1 - evaluation.top1_error:.1%}")
    mc.save(OUT / "model.npz", model, class_names=train_ds.class_names)
    reloaded = nn.Sequential(OrderedDict(base=vgg_style_base(), pool=nn.GlobalAvgPool2d(), dropout=nn.Dropout(0.2),
                                         dense=nn.Linear(64, 1)))
    mc.load(OUT / "model.npz", reloaded)
    same = mc.evaluate(reloaded, validation, loss_fn=loss)
    print(f"reloaded: the same accuracy {1 - same.top1_error:.1%}, classes {reloaded.class_names}")

    # ---- 8. predict one file: keras.utils.load_img(path, target_size=...) -> model.predict
    path = validation_ds.dataset.files[int(validation_ds.indices[0])]
    image = normalize(mc.data.load_image(path, IMG_SIZE))
    reloaded.eval()
    with mc.no_grad():
        logit = reloaded(mc.Tensor(image[None])).numpy()[0, 0]
    print(f"predict {os.path.relpath(path, root)}: {reloaded.class_names[int(logit > 0)]} "
          f"(p(not_cat) = {1 / (1 + np.exp(-logit)):.2f})")


if __name__ == "__main__":
    main()
