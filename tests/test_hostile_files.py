"""Files from strangers: image folders holding decompression bombs, FIFOs, symbolic link loops,
folders with image names, hidden folders and empty classes; checkpoints with hostile metadata
(JSON nested 100,000 deep, a member declaring a terabyte, complex or NaN weights).

Every file here is real, written byte by byte where a library would refuse to write it.
"""

import io
import json
import os
import struct
import threading
import zipfile
import zlib

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import nn
from minicnn.data.sources import MAX_IMAGE_PIXELS

pytest.importorskip("PIL")


def bilevel_png(path, width, height):
    """A valid 1-bit PNG of width x height black pixels, written chunk by chunk: 20000 x 20000 is
    400 million pixels in about 50 KB, a decompression bomb (Pillow would need the pixels in
    memory to write it)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" * (1 + (width + 7) // 8)            # filter byte 0, then the packed pixels
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def image(path, value=128):
    from PIL import Image
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)


def two_classes(tmp_path):
    root = tmp_path / "photos"
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            image(root / name / f"{i}.png", 40 * i)
    return root


def without_blocking(fn, fifo=None, seconds=20):
    """fn() in a thread; fails (and unblocks the thread by opening ``fifo`` for writing) if it has
    not returned within ``seconds``: a reader of a FIFO waits for a writer forever."""
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:      # handed to the test
            result["error"] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked for {seconds} s (opened the FIFO?)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --------------------------------------------------------------------------- images
def test_a_decompression_bomb_is_named_under_raise_and_skipped_under_skip(tmp_path):
    root = two_classes(tmp_path)
    bomb = root / "cats" / "bomb.png"
    bilevel_png(bomb, 20000, 20000)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"cannot read image .*bomb\.png: DecompressionBombError"):
        D.load_image(str(bomb), (8, 8))
    ds = D.image_folder(str(root), image_size=(8, 8))
    with pytest.raises(ValueError, match=r"bomb\.png"):
        list(D.DataLoader(ds, 5))
    with pytest.warns(UserWarning, match=r"skipping cannot read image .*bomb\.png: DecompressionBombError"):
        skipping = D.image_folder(str(root), image_size=(8, 8), on_error="skip")
    assert len(skipping) == 4 and str(bomb) not in skipping.files


def test_an_image_above_minicnns_own_pixel_limit_is_refused_before_decoding(tmp_path):
    side = 8200                                      # 67.2 million pixels: below Pillow's limit, above ours
    assert side * side > MAX_IMAGE_PIXELS == 8192 * 8192
    path = tmp_path / "big.png"
    bilevel_png(path, side, side)
    with pytest.raises(ValueError, match=r"big\.png: ValueError: it is 8200x8200 pixels, more than the 67108864"):
        D.load_image(str(path))
    bilevel_png(path, 8192, 8192)                    # at the limit: read
    assert D.load_image(str(path), (4, 4)).shape == (3, 4, 4)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and symbolic links as POSIX has them")
def test_fifos_folders_and_link_loops_with_image_names_are_reported_as_what_they_are(tmp_path):
    root = two_classes(tmp_path)
    fifo = root / "cats" / "p.png"
    os.mkfifo(fifo)
    (root / "cats" / "x.jpg").mkdir()
    os.symlink("loop.jpg", root / "dogs" / "loop.jpg")
    os.symlink("nowhere.png", root / "dogs" / "broken.png")
    reasons = {fifo: r"p\.png is a named pipe \(FIFO\), not an image file",
               root / "cats" / "x.jpg": r"x\.jpg is a folder, not an image file",
               root / "dogs" / "loop.jpg": r"loop\.jpg is a symbolic link loop",
               root / "dogs" / "broken.png": r"broken\.png is a broken symbolic link \(to nowhere\.png\)"}
    for path, reason in reasons.items():
        with pytest.raises((ValueError, OSError), match=reason):
            without_blocking(lambda: D.load_image(str(path)), fifo)
    with pytest.raises(ValueError, match=reasons[fifo]):           # the first one, in sorted order
        without_blocking(lambda: D.image_folder(str(root), image_size=(8, 8)), fifo)
    with pytest.warns(UserWarning) as caught:
        skipping = without_blocking(lambda: D.image_folder(str(root), image_size=(8, 8), on_error="skip"), fifo)
    messages = "\n".join(str(w.message) for w in caught)
    for reason in reasons.values():
        assert len([line for line in messages.splitlines() if __import__("re").search(reason, line)]) == 1, reason
    assert len(skipping) == 4 and skipping.classes == ["cats", "dogs"]


def test_hidden_folders_and_files_are_ignored(tmp_path):
    root = two_classes(tmp_path)
    (root / ".ipynb_checkpoints").mkdir()
    image(root / ".ipynb_checkpoints" / "0-checkpoint.png")
    (root / "cats" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")   # not a PNG
    ds = D.image_folder(str(root), image_size=(8, 8))
    assert ds.classes == ["cats", "dogs"] and len(ds) == 4
    assert len(list(D.DataLoader(ds, 4))) == 1


def test_a_class_folder_without_images_is_an_error_naming_it(tmp_path):
    root = two_classes(tmp_path)
    (root / "birds").mkdir()
    (root / "birds" / "README.txt").write_text("photos to come")
    with pytest.raises(ValueError, match=r"class folder .*birds holds no images"):
        D.image_folder(str(root), image_size=(8, 8))
    (root / "birds" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        with pytest.raises(ValueError, match=r"every image of the class folder\(s\) \['birds'\] was skipped"):
            D.image_folder(str(root), image_size=(8, 8), on_error="skip")


# --------------------------------------------------------------------------- checkpoints
def small_model():
    mc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def rewrite_member(path, member, data):
    """The checkpoint at ``path`` with one member's bytes replaced (the zip is rewritten with
    correct CRCs: only what the member says is hostile)."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def npy_bytes(array=None, header_shape=None, dtype="<f4", payload=b""):
    """A .npy member: the array's bytes, or a header declaring ``header_shape`` over ``payload``."""
    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buffer.getvalue() + payload


def member_of(path, entry):
    """The member name holding the array that meta.json calls ``entry``."""
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(str(np.load(io.BytesIO(archive.read("meta.json.npy")))))
    return meta["model"][entry]["__array__"] + ".npy"


def test_meta_json_nested_100000_deep_is_refused_without_recursing(tmp_path):
    path = tmp_path / "deep.npz"
    mc.save(str(path), small_model(), epoch=1)
    meta = '{"format": "minicnn-checkpoint", "version": 1, "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    rewrite_member(path, "meta.json.npy", npy_bytes(np.array(meta)))
    with pytest.raises(ValueError, match="meta.json nests 100001 deep, more than the 64"):
        mc.load(str(path))
    # brackets inside strings are text, not nesting
    meta = {"format": "minicnn-checkpoint", "version": 1, "epoch": 1, "model": {}, "optimizer": None,
            "scheduler": None, "history": None, "rng": None, "extra": {"note": "[" * 1000}}
    rewrite_member(path, "meta.json.npy", npy_bytes(np.array(json.dumps(meta))))
    assert mc.load(str(path), restore_rng=False)["extra"] == {"note": "[" * 1000}


def test_a_member_declaring_a_terabyte_is_refused_before_anything_is_allocated(tmp_path):
    path = tmp_path / "huge.npz"
    mc.save(str(path), small_model(), epoch=1)
    member = member_of(path, "3.weight")
    rewrite_member(path, member, npy_bytes(header_shape=(10 ** 12,), payload=b"\x00" * 96))
    with pytest.raises(ValueError, match=rf"member '{member}' declares shape \(1000000000000,\) of float32 "
                                         r"\(4000000000000 bytes\) but holds 96 bytes"):
        mc.load(str(path))
    # a member whose zip directory entry claims more bytes than the whole file has
    data = bytearray(path.read_bytes())
    record = data.index(b"PK\x01\x02")                 # the central directory: one record per member
    while data[record + 46:record + 46 + len(member)] != member.encode():
        record = data.index(b"PK\x01\x02", record + 4)
    data[record + 24:record + 28] = struct.pack("<I", 2 ** 32 - 2)     # its uncompressed size: 4 GB
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"'{member}' declares 4294967294 bytes, which a \d+-byte file cannot "
                                         r"hold"):
        mc.load(str(path))


def test_complex_weights_are_refused_naming_the_entry(tmp_path):
    path = tmp_path / "complex.npz"
    model = small_model()
    mc.save(str(path), model, epoch=1)
    weight = model.state_dict()["0.weight"]
    rewrite_member(path, member_of(path, "0.weight"), npy_bytes(weight.astype(np.complex64) + 1j))
    with pytest.raises(ValueError, match=r"model\.0\.weight is complex \(complex64\)"):
        mc.load(str(path), small_model())


def test_nan_and_infinite_weights_are_refused_naming_the_entry(tmp_path):
    path = tmp_path / "nan.npz"
    model = small_model()
    state = model.state_dict()
    state["3.bias"] = np.array([0.0, np.nan, np.inf], np.float32)
    model.load_state_dict(state)
    mc.save(str(path), model, epoch=1)
    with pytest.raises(ValueError, match=r"model\.3\.bias holds NaN and infinity \(2 of 3 values\)"):
        mc.load(str(path), small_model())
    with pytest.raises(ValueError, match=r"model\.3\.bias holds NaN"):
        mc.load(str(path))                                 # reading it alone is refused too
