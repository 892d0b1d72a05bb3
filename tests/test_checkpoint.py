"""Checkpoints: round trip, resume == uninterrupted, atomic writes, corrupt and mismatched files."""

import os
import zipfile

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import nn, optim


def tiny_model(classes=3):
    # dropout makes the run depend on minicnn's RNG, which the checkpoint must restore
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 4 * 4, classes))


def tiny_data(n=48, classes=3):
    g = np.random.default_rng(0)
    labels = np.arange(n) % classes
    images = g.normal(0, 1, size=(n, 1, 10, 10)).astype(np.float32)
    images[:, 0, 2:5, 2:5] += labels[:, None, None] * 1.5  # a learnable signal
    return D.ArrayDataset(images, labels)


def setup(seed=0):
    """Everything a run needs, built the same way each time."""
    mc.manual_seed(seed)
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = optim.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    train = D.DataLoader(tiny_data(), 8, shuffle=True, seed=1, transform=D.RandomCrop(8), prefetch=0)
    val = D.DataLoader(tiny_data(24), 12, transform=D.CenterCrop(8), prefetch=0)
    return model, opt, sched, train, val


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    model, opt, sched, train, val = setup()
    straight = mc.fit(model, train, 4, opt, val_loader=val, scheduler=sched, verbose=False)
    expected = model.state_dict()

    path = str(tmp_path / "run.npz")
    model, opt, sched, train, val = setup()
    mc.fit(model, train, 2, opt, val_loader=val, scheduler=sched, checkpoint=path, verbose=False)
    mc.manual_seed(123)  # a new process: different RNG state, fresh objects
    model, opt, sched, train, val = setup(seed=7)
    state = mc.load(path, model, opt, sched)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    resumed = mc.fit(model, train, 4, opt, val_loader=val, scheduler=sched,
                     initial_epoch=state["epoch"], history=state["history"], verbose=False)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert resumed.to_dict() | {"seconds": None} == straight.to_dict() | {"seconds": None}
    assert straight.train_loss[-1] < straight.train_loss[0]  # it did learn something


def test_save_load_round_trip(tmp_path):
    model, opt, sched, train, val = setup()
    history = mc.fit(model, train, 1, opt, val_loader=val, scheduler=sched, verbose=False)
    path = str(tmp_path / "c.npz")
    rng_state = mc.random.get_state()
    mc.save(path, model, opt, scheduler=sched, epoch=1, history=history, extra={"note": "hi", "sizes": [1, 2]})
    mc.random.next_seed()
    other, other_opt, other_sched, _, _ = setup(seed=5)
    state = mc.load(path, other, other_opt, other_sched)
    assert state["extra"] == {"note": "hi", "sizes": [1, 2]} and state["epoch"] == 1
    assert state["history"].to_dict() == history.to_dict()
    assert mc.random.get_state() == rng_state
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], value)
    assert other_sched.best == sched.best
    for pos, buffers in opt.state.items():
        np.testing.assert_array_equal(other_opt.state[pos]["velocity"], buffers["velocity"])
    only_model = mc.load(path, restore_rng=False)  # nothing to load into: just read it
    assert set(only_model["model"]) == set(model.state_dict())
    assert not [f for f in os.listdir(tmp_path) if f != "c.npz"]  # no temporary files left


def test_a_crash_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    model, opt, _, _, _ = setup()
    path = str(tmp_path / "c.npz")
    mc.save(path, model, opt, epoch=1)
    before = open(path, "rb").read()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")  # some bytes reach the disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    model.state_dict()  # unchanged model; what matters is the file
    with pytest.raises(KeyboardInterrupt):
        mc.save(path, model, opt, epoch=2)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert mc.load(path, model)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.npz"]  # the temporary file was removed


def test_corrupt_checkpoints_are_clear_errors(tmp_path):
    model, opt, _, _, _ = setup()
    path = tmp_path / "c.npz"
    mc.save(str(path), model, opt, epoch=1)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz is corrupt"):
        mc.load(str(truncated), model)

    flipped = bytearray(data)
    with zipfile.ZipFile(path) as archive:
        member = archive.infolist()[0]
    # one damaged byte inside the first array (past its member's 30-byte header and name)
    flipped[member.header_offset + 30 + len(member.filename) + member.compress_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="damaged.npz"):
        mc.load(str(damaged), model)

    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a minicnn checkpoint"):
        mc.load(str(text))

    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a minicnn checkpoint"):
        mc.load(str(other))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        mc.load(str(tmp_path / "missing.npz"))


def test_a_mismatched_checkpoint_names_the_problem(tmp_path):
    model, opt, _, _, _ = setup()
    path = str(tmp_path / "c.npz")
    mc.save(path, model, opt, epoch=1)
    with pytest.raises(ValueError, match="does not match.*5.weight"):
        mc.load(path, tiny_model(classes=4))  # the last layer has another shape
    bigger = nn.Sequential(tiny_model(), nn.Linear(3, 3))
    with pytest.raises(ValueError, match="does not match"):
        mc.load(path, bigger)
    with pytest.raises(ValueError, match="does not match.*Adam"):
        mc.load(path, model, optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match="no scheduler state"):
        mc.load(path, model, opt, optim.StepLR(opt, 1))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoint_gets_the_mode_any_new_file_gets(tmp_path, umask):
    model, opt, _, _, _ = setup()
    old = os.umask(umask)
    try:
        mc.save(str(tmp_path / "c.npz"), model, opt, epoch=1)
        with open(tmp_path / "plain.txt", "w") as f:   # what open() gives under the same umask
            f.write("x")
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "c.npz").st_mode & 0o777
    assert mode == 0o666 & ~umask == os.stat(tmp_path / "plain.txt").st_mode & 0o777
    assert sorted(os.listdir(tmp_path)) == ["c.npz", "plain.txt"]   # no temporary file left


def test_files_of_other_kinds_are_named_not_a_checkpoint(tmp_path):
    from PIL import Image
    png = tmp_path / "some.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    npy = tmp_path / "weights.npy"
    np.save(npy, np.zeros(3))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{}], dtype=object), allow_pickle=True)
    for path in (png, npy, pickled):
        with pytest.raises(ValueError, match=rf"{path.name} is not a minicnn checkpoint \(not an .npz archive") as e:
            mc.load(str(path))
        assert "pickle" not in str(e.value)
    with pytest.raises(IsADirectoryError, match="is a folder, not a checkpoint"):
        mc.load(str(tmp_path))


def test_class_names_are_stored_and_given_back(tmp_path):
    model, opt, _, train, _ = setup()
    path = str(tmp_path / "named.npz")
    mc.save(path, model, opt, class_names=["cat", "dog", "fox"])
    other = setup(seed=5)[0]
    state = mc.load(path, other, restore_rng=False)
    assert state["class_names"] == ["cat", "dog", "fox"] and other.class_names == ["cat", "dog", "fox"]
    mc.save(path, other)                                   # the model knows them now: saved again by default
    assert mc.load(path, restore_rng=False)["class_names"] == ["cat", "dog", "fox"]
    mc.save(path, setup()[0])                              # neither the call nor the model names any
    assert mc.load(path, restore_rng=False)["class_names"] is None
    with pytest.raises(TypeError, match="class_names must be a list of names"):
        mc.save(path, model, class_names="cat")
