"""Keras's VGG16 weights in minicnn: the files Keras itself writes, read by mc.weights.load, give
Keras's own features and logits for the same image.

Keras 3 runs here on the PyTorch backend (KERAS_BACKEND=torch): keras.applications.VGG16 is built
with random weights (weights=None: nothing is downloaded) at a small input, its biases made
non-zero so that they are checked too, and saved

- as Keras 3's ``.weights.h5`` (model.save_weights), and
- in Keras 2's layout, the layout of ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``
  (keras/src/legacy/saving/legacy_h5_format.py: the root's attribute ``layer_names`` lists every
  layer, each layer's group lists its arrays in its attribute ``weight_names``), written here with
  h5py, once with the 2016 files' dataset names (``block1_conv1_W_1:0``) and once with Keras 2's
  nested ones (``block1_conv1/kernel:0``), and by Keras's own legacy writer where it has one.

These tests skip, saying so, where keras (or h5py, or torch for Keras's backend) does not import.
"""

import os
from collections import OrderedDict

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")           # before keras is imported; torch is the test oracle
h5py = pytest.importorskip("h5py", reason="h5py is not installed: Keras .h5 files cannot be read (pip install h5py)")
keras = pytest.importorskip("keras", reason="keras is not installed (pip install keras): the Keras comparison "
                                            "is skipped")

import minicnn as mc                                        # noqa: E402
from minicnn import nn                                      # noqa: E402

# Keras on PyTorch warns about NumPy 2's copy keyword hundreds of times, and about its input names
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
              pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")]

HEIGHT, WIDTH = 64, 96          # pool5 is 2x3: the first dense kernel's channels-last order matters
CLASSES = 10


def keras_vgg16(include_top, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.applications.VGG16(weights=None, include_top=include_top, input_shape=(HEIGHT, WIDTH, 3),
                                     classes=CLASSES, classifier_activation=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:                       # Keras starts biases at 0, which would hide a misplaced bias
            kernel, bias = weights
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape).astype(bias.dtype)])
    return model


def photo():
    """A real photograph (scikit-image's astronaut) at HEIGHT x WIDTH, uint8 (H, W, 3)."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    from PIL import Image
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((WIDTH, HEIGHT), Image.BILINEAR))


def keras_output(model, image):
    from keras.applications.vgg16 import preprocess_input
    return keras.ops.convert_to_numpy(model(preprocess_input(image[None].astype(np.float32)), training=False))


def minicnn_output(model, image):
    prep = mc.weights.preprocessing("vgg16", convention="caffe")
    model.eval()
    with mc.no_grad():
        return model(mc.Tensor(prep(image.transpose(2, 0, 1)[None]))).numpy()


def minicnn_vgg16_with_top():
    """mc.models.vgg16's layers, with the top sized for HEIGHT x WIDTH inputs (2x3 maps into fc6),
    as Keras's VGG16 at that input size has it."""
    base = mc.models.vgg16(include_top=False)
    return nn.Sequential(OrderedDict(list(base.named_children()) + [
        ("avgpool", nn.AdaptiveAvgPool2d((2, 3))), ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(512 * 2 * 3, 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.5)),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.5)),
        ("fc8", nn.Linear(4096, CLASSES))]))


def write_keras2_layout(model, path, dataset_names):
    """``model``'s weights in Keras 2's .h5 layout (legacy_h5_format.save_weights_to_hdf5_group), with h5py.

    dataset_names(layer name, i) names the i-th array of a layer: "block1_conv1_W_1:0" as in the
    2016 VGG16 files, or "block1_conv1/kernel:0" (a group and a dataset) as Keras 2 wrote them.
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in sorted(model.layers, key=lambda layer: layer.name):
            group = f.create_group(layer.name)
            arrays = layer.get_weights()
            names = [dataset_names(layer.name, i).encode("utf8") for i in range(len(arrays))]
            group.attrs["weight_names"] = names
            for name, array in zip(names, arrays):
                group.create_dataset(name.decode("utf8"), data=array)


def keras_2016_names(layer, i):
    return f"{layer}_{'Wb'[i]}_1:0"


def keras2_names(layer, i):
    return f"{layer}/{('kernel', 'bias')[i]}:0"


def saved_files(model, tmp_path, top):
    """The model's weights in every layout: {description: path}."""
    files = {"Keras 3 .weights.h5": tmp_path / f"{top}.weights.h5",
             "Keras 2 layout, 2016 names": tmp_path / f"{top}_2016.h5",
             "Keras 2 layout": tmp_path / f"{top}_keras2.h5"}
    model.save_weights(str(files["Keras 3 .weights.h5"]))
    write_keras2_layout(model, files["Keras 2 layout, 2016 names"], keras_2016_names)
    write_keras2_layout(model, files["Keras 2 layout"], keras2_names)
    try:
        from keras.src.legacy.saving import legacy_h5_format
    except ImportError:
        return files
    files["Keras's own legacy writer"] = tmp_path / f"{top}_legacy.h5"
    with h5py.File(files["Keras's own legacy writer"], "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return files


def assert_same_features(ours, theirs, what):
    assert ours.shape == theirs.shape, what
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max(), err_msg=what)


def test_keras_vgg16_without_top_gives_keras_features(tmp_path):
    model, image = keras_vgg16(include_top=False), photo()
    expected = keras_output(model, image).transpose(0, 3, 1, 2)          # (1, 2, 3, 512) -> (1, 512, 2, 3)
    assert expected.shape == (1, 512, 2, 3) and expected.std() > 0
    for what, path in saved_files(model, tmp_path, "notop").items():
        base = mc.models.vgg16(include_top=False)
        result = mc.weights.load(base, path)
        assert len(result.loaded) == 26, what                             # 13 convolutions, kernel and bias
        assert_same_features(minicnn_output(base, image), expected, what)


def test_keras_vgg16_with_top_gives_keras_logits_and_its_base_features(tmp_path):
    model, image = keras_vgg16(include_top=True), photo()
    expected = keras_output(model, image)
    pool5 = keras.Model(model.inputs, model.get_layer("block5_pool").output)
    expected_features = keras_output(pool5, image).transpose(0, 3, 1, 2)
    for what, path in saved_files(model, tmp_path, "top").items():
        ours = minicnn_vgg16_with_top()
        assert len(mc.weights.load(ours, path).loaded) == 32, what
        assert_same_features(minicnn_output(ours, image), expected, what)
        base = mc.models.vgg16(include_top=False)                         # a file's top is left out
        assert len(mc.weights.load(base, path).loaded) == 26, what
        assert_same_features(minicnn_output(base, image), expected_features, what)


def test_the_first_dense_kernel_is_reordered_from_channels_last():
    # fc1's input i of Keras is (h, w, c) = divmod-ed channels-last; ours is c * H*W + h * W + w
    kernel = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2 * 3 * 4, 5)       # 2x3 maps of 4 channels
    model = nn.Sequential(OrderedDict(pool=nn.AdaptiveAvgPool2d((2, 3)), flatten=nn.Flatten(), fc6=nn.Linear(24, 5)))
    state, original = mc.weights.from_keras({"fc1.kernel": kernel, "fc1.bias": np.zeros(5, np.float32)}, model)
    ours = state["fc6.weight"]
    assert ours.shape == (5, 24) and original["fc6.weight"] == "fc1.kernel"
    for c, h, w, out in np.ndindex(4, 2, 3, 5):
        assert ours[out, c * 6 + h * 3 + w] == kernel[(h * 3 + w) * 4 + c, out]


def test_preprocessing_caffe_is_keras_preprocess_input():
    from keras.applications.vgg16 import preprocess_input
    image = photo()
    expected = preprocess_input(image[None].astype(np.float32)).transpose(0, 3, 1, 2)
    prep = mc.weights.preprocessing("vgg16", convention="caffe")
    np.testing.assert_allclose(prep(image.transpose(2, 0, 1)[None]), expected, rtol=0, atol=1e-4)
    # minicnn's float images in [0, 1] (what a DataLoader gives) come out the same
    floats = image.transpose(2, 0, 1).astype(np.float32) / 255
    np.testing.assert_allclose(prep(floats), expected[0], rtol=0, atol=1e-4)
    assert mc.weights.preprocessing("vgg16") is mc.weights.preprocessing("vgg16", convention="torch")
    with pytest.raises(ValueError, match=r"no preprocessing convention 'caffe' for resnet18; known: \['torch'\]"):
        mc.weights.preprocessing("resnet18", convention="caffe")


def test_files_that_are_not_keras_vgg16_are_clear_errors(tmp_path):
    keras.utils.set_random_seed(0)
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="stem"),
                              keras.layers.BatchNormalization(name="stem_bn")])
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(ValueError, match="Keras layer 'stem_bn' holds 4 arrays"):
        mc.weights.load(mc.models.vgg16(include_top=False), path)
    convs_only = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="stem")])
    convs_only.save_weights(str(path))
    with pytest.raises(KeyError, match="Keras layer 'stem' is not a layer of Keras's vgg16.*block1_conv1"):
        mc.weights.load(mc.models.vgg16(include_top=False), path)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="not Keras weights"):
        mc.weights.load(mc.models.vgg16(include_top=False), tmp_path / "plain.h5")
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(ValueError, match="cannot read it as an HDF5 file"):
        mc.weights.load(mc.models.vgg16(include_top=False), tmp_path / "text.h5")


def test_a_keras_file_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)          # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"needs h5py \(pip install h5py\)"):
        mc.weights.load(mc.models.vgg16(include_top=False), path)
