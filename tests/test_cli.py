"""python -m minicnn as a new user meets it: errors without tracebacks, exit statuses,
--help, runs that fail leave nothing behind, evaluate tests exactly the images held out."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    """(exit status, stdout, stderr) of one command, in this process."""
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    return lines[-1]


# ------------------------------------------------------------------ the user's mistakes: exit 2, one line
@pytest.mark.parametrize("argv, says", [
    (["evaluate", "missing.npz"], "checkpoint missing.npz does not exist"),
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--dataset", "folder:/no/such/folder"], "image folder /no/such/folder does not exist"),
    (["train", "--model", "alexnet", "--dataset", "digits"], "--model alexnet takes 227x227 crops of RGB photos"),
    (["train", "--dataset", "digits", "--batch-size", "5000"], "use --batch-size 1438 or less"),
    (["summary", "alexnet", "--input-shape", "3", "224", "224"],
     "layer fc6 (Linear) gets 6400 and refuses it: linear: weight expects 9216 input features"),
    (["summary", "alexnet_torchvision", "--no-top", "--input-shape", "1", "64", "64"],
     "layer conv1 (Conv2d) gets 1x64x64 and refuses it: conv2d: weight expects 3 input channels"),
    (["summary", "alexnet_small", "--input-shape", "1", "12", "12"], "input_size must be an int >= 15"),
])
def test_a_users_mistake_is_one_error_line_and_exit_status_2(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert says in one_error_line(err)
    assert not (tmp_path / "runs").exists()   # nothing written for a command that cannot work


def test_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "some.png")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "some.png"))
    assert code == 2 and "some.png is not a minicnn checkpoint" in one_error_line(err)
    assert "pickle" not in err


def test_argparse_mistakes_exit_2_too(capsys):
    for argv in (["train", "--epochs", "0"], ["summary", "resnet"], ["train", "--on-bad-image", "ignore"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    with pytest.raises(cli.UsageError):
        cli.main(["summary", "alexnet_small", "--input-shape", "1", "12", "12", "--debug"])
    monkeypatch.setenv("MINICNN_DEBUG", "1")
    with pytest.raises(cli.UsageError) as e:
        cli.main(["evaluate", "missing.npz"])
    assert isinstance(e.value.__cause__, FileNotFoundError)   # the traceback shows where it came from


def test_from_a_shell_the_error_is_one_line_and_the_status_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minicnn", "evaluate", "missing.npz"], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: checkpoint missing.npz does not exist"]


def test_a_runtime_failure_exits_1_and_leaves_no_empty_run_folder(tmp_path, capsys, monkeypatch):
    import minicnn as mc

    def diverge(*args, **kwargs):
        raise FloatingPointError("the loss became nan in epoch 1, batch 3")
    monkeypatch.setattr(mc, "fit", diverge)
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--dataset", "digits", "--out", str(out))
    assert code == 1 and "the loss became nan" in one_error_line(err)
    assert not out.exists()


# ------------------------------------------------------------------ --help
def subcommand_parsers():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in commands.choices.items() if name != "transfer"}


@pytest.mark.parametrize("name", ["train", "evaluate", "summary", "export", "graph", "explain"])
def test_help_says_what_every_option_does_and_its_default(name, capsys):
    parser = subcommand_parsers()[name]
    for action in parser._actions:
        assert action.help, f"{name} {action.dest} has no help"
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
    if name == "train":
        assert "227-pixel crops" in " ".join(text.split())   # --model alexnet needs photos


def test_transfer_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["transfer", "--help"])
    assert e.value.code == 0
    assert "(default: 5)" in capsys.readouterr().out


# ------------------------------------------------------------------ summary: the whole zoo
def test_summary_takes_every_model_of_the_zoo_and_rebuilds_for_the_shape(capsys):
    code, out, _ = run(capsys, "summary", "alexnet_small", "--input-shape", "3", "32", "32")
    assert code == 0 and "input: 3x32x32" in out and "total parameters: 699,594" in out
    code, out, _ = run(capsys, "summary", "alexnet_small", "--input-shape", "1", "32", "40")
    assert code == 0 and "input: 1x32x40" in out
    # (vgg16 and alexnet with their tops: tests/test_docs.py runs the documented commands)
    code, out, _ = run(capsys, "summary", "alexnet_torchvision", "--no-top", "--input-shape", "3", "100", "100")
    assert code == 0 and "input: 3x100x100" in out and "256x2x2" in out
    code, out, _ = run(capsys, "summary", "alexnet", "--no-top", "--input-shape", "3", "224", "224")
    assert code == 0 and "pool5" in out and "fc6" not in out


# ------------------------------------------------------------------ folder runs: the split, bad images
def make_folder(root, per_class=31, classes=("a", "b")):
    """62 small photos in two classes (bright squares and dark ones)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 120, (20, 20, 3)) + 120 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def train_folder(capsys, folder, out, *extra, batch_size=16):
    return run(capsys, "train", "--dataset", f"folder:{folder}", "--epochs", "1", "--batch-size", str(batch_size),
               "--out", str(out), *extra)


def test_evaluate_tests_exactly_the_images_a_folder_run_held_out(tmp_path, capsys):
    from PIL import Image
    folder = make_folder(tmp_path / "photos")
    code, out, _ = train_folder(capsys, folder, tmp_path / "run")
    assert code == 0
    assert "top-5" not in out   # two classes: every label is in the top 5
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_images"] == 12 and metrics["test_top5_error"] is None

    code, first, _ = run(capsys, "evaluate", checkpoint)
    assert code == 0 and "(12 images" in first and "top-5" not in first
    # one image added: a split recomputed from the folder would move images between train and test
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "a" / "000a.png")
    code, again, _ = run(capsys, "evaluate", checkpoint)
    assert code == 0 and again == first
    # a held-out image changed, then gone: refused, naming it
    import minicnn as mc
    held_out = mc.load(checkpoint)["extra"]["test_set"]["files"][0][0]
    Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(folder / held_out)
    code, _, err = run(capsys, "evaluate", checkpoint)
    assert code == 2 and f"1 changed ({held_out})" in one_error_line(err)
    os.remove(folder / held_out)
    code, _, err = run(capsys, "evaluate", checkpoint)
    assert code == 2 and f"1 missing ({held_out})" in one_error_line(err)


def test_on_bad_image_skip_or_error(tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", per_class=12)
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    code, _, err = train_folder(capsys, folder, tmp_path / "stops")
    assert code == 1 and "broken.png" in one_error_line(err)
    assert not (tmp_path / "stops").exists()
    with pytest.warns(UserWarning, match="broken.png"):
        code, _, _ = train_folder(capsys, folder, tmp_path / "skips", "--on-bad-image", "skip")
    assert code == 0 and (tmp_path / "skips" / "checkpoint.npz").is_file()


def test_a_folder_smaller_than_the_batch_is_refused_before_anything_is_written(tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", per_class=5)
    code, _, err = train_folder(capsys, folder, tmp_path / "run")
    assert code == 2 and "8 training images, fewer than --batch-size 16" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_a_missing_matplotlib_stops_train_before_it_trains(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib now raises ImportError
    code, _, err = run(capsys, "train", "--dataset", "digits", "--out", str(tmp_path / "run"))
    assert code == 2 and "pip install matplotlib" in one_error_line(err)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ export, graph, explain
def test_export_writes_the_trained_network_that_onnxruntime_runs(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'minicnn[onnx]')")
    import minicnn as mc
    code, _, _ = run(capsys, "train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert code == 0
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    code, out, _ = run(capsys, "export", checkpoint, str(tmp_path / "model.onnx"))
    assert code == 0 and "alexnet_small for 1x24x24 inputs" in out
    state, extra = cli.train.read_run_checkpoint(checkpoint)
    model = cli.train.model_of_run(checkpoint, extra).eval()
    images = np.random.default_rng(0).standard_normal((5, 1, 24, 24)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    with mc.no_grad():
        expected = model(mc.Tensor(images)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": images})[0], expected, rtol=0, atol=1e-5)
    code, _, err = run(capsys, "export", str(tmp_path / "model.onnx"), str(tmp_path / "again.onnx"))
    assert code == 2 and "not a minicnn checkpoint" in one_error_line(err)


def test_graph_draws_one_training_step(tmp_path, capsys):
    code, out, _ = run(capsys, "graph", "alexnet_small", "--out", str(tmp_path / "g.dot"))
    assert code == 0 and "24 op boxes and 16 parameters" in out
    assert (tmp_path / "g.dot").read_text().count("|grad|") == 24 + 16
    code, out, _ = run(capsys, "graph", "alexnet_small", "--depth", "1", "--out", str(tmp_path / "g.png"))
    assert code == 0 and (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


def test_explain_prints_the_op_and_refuses_unknown_names(capsys):
    code, out, _ = run(capsys, "explain", "max_pool2d")
    assert code == 0 and "csrc/pool.cuh" in out and "minicnn/naive.py" in out
    code, _, err = run(capsys, "explain", "conv3d")
    assert code == 2 and "no op named 'conv3d'" in one_error_line(err)


# ------------------------------------------------------------------ summary and evaluate: the whole zoo, any checkpoint
def shell(*argv, cwd=None):
    """(exit status, stdout, stderr) of `python -m minicnn ...` run from a shell."""
    done = subprocess.run([sys.executable, "-m", "minicnn", *argv], cwd=cwd or ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_the_commands_know_every_model_of_the_zoo():
    import minicnn as mc
    from minicnn.cli.common import ZOO
    assert set(ZOO) == set(mc.models.ZOO)
    builders = {name for name, value in vars(mc.models).items()
                if callable(value) and not isinstance(value, type) and not name.startswith("_") and name != "build"}
    assert builders == set(mc.models.ZOO)


@pytest.mark.parametrize("name, parameters", [
    ("alexnet", "60,965,224"), ("alexnet_small", "534,154"), ("alexnet_torchvision", "61,100,840"),
    ("vgg16", "138,357,544"), ("vgg16_bn", "138,365,992"), ("resnet18", "11,689,512")])
def test_summary_of_every_zoo_model(name, parameters, capsys):
    code, out, _ = run(capsys, "summary", name)
    assert code == 0 and f"total parameters: {parameters}" in out   # torchvision's counts for its models


def test_summary_from_a_shell_resnet18_without_its_top():
    code, out, err = shell("summary", "resnet18", "--no-top", "--input-shape", "3", "64", "64")
    assert code == 0, err
    assert "input: 3x64x64" in out and "layer4.1.relu" in out and "total parameters: 11,176,512" in out


def digits_test_error(model, side=28):
    """top-1 error of ``model`` on the digits' test images (seed 0) resized to ``side``, in this process."""
    import minicnn as mc
    import minicnn.data as D
    _, test = D.digits(seed=0)
    loader = D.DataLoader(test, 250, transform=D.Resize((side, side)))
    return mc.evaluate(model, loader).top1_error


def test_evaluate_a_zoo_model_saved_with_mc_save(tmp_path):
    import minicnn as mc
    mc.manual_seed(3)
    model = mc.models.alexnet_small(num_classes=10)
    mc.save(str(tmp_path / "model.npz"), model)
    code, out, err = shell("evaluate", str(tmp_path / "model.npz"), "--dataset", "digits")
    assert code == 0, err
    assert "alexnet_small on digits test set (359 images, as the dataset gives them, not normalised" in out
    assert f"top-1 error {digits_test_error(model):.2%}" in out
    # what it cannot do: one error line, exit status 2
    code, _, err = shell("evaluate", str(tmp_path / "model.npz"))
    assert code == 2 and "does not record the data it was trained on: give --dataset" in one_error_line(err)
    code, _, err = shell("evaluate", str(tmp_path / "model.npz"), "--dataset", "digits", "--model", "vgg16")
    assert code == 2 and "holds the zoo model alexnet_small, not vgg16" in one_error_line(err)
    code, _, err = shell("evaluate", str(tmp_path / "model.npz"), "--dataset", "digits", "--ten-crop")
    assert code == 2 and "--ten-crop needs the crop the model was trained on" in one_error_line(err)
    code, _, err = shell("evaluate", str(tmp_path / "model.npz"), "--dataset", "digits", "--data-root", "/x")
    assert code == 2 and "this one records none" in one_error_line(err)


def test_evaluate_a_model_that_does_not_record_its_network_with_model(tmp_path, capsys):
    import minicnn as mc
    from collections import OrderedDict
    mc.manual_seed(4)
    zoo_model = mc.models.alexnet_small(num_classes=10)
    by_hand = mc.nn.Sequential(OrderedDict(zoo_model.named_children()))   # the same layers, built by hand
    assert not hasattr(by_hand, "architecture")
    mc.save(str(tmp_path / "model.npz"), by_hand)
    code, _, err = run(capsys, "evaluate", str(tmp_path / "model.npz"), "--dataset", "digits")
    assert code == 2 and "does not record its network" in one_error_line(err) and "--model NAME" in err
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "model.npz"), "--dataset", "digits", "--model",
                       "alexnet_small")
    assert code == 0 and f"top-1 error {digits_test_error(zoo_model):.2%}" in out
    code, _, err = run(capsys, "evaluate", str(tmp_path / "model.npz"), "--dataset", "digits", "--model",
                       "alexnet_torchvision")
    assert code == 2 and "does not match" in one_error_line(err) and "as --model alexnet_torchvision" in err


def test_evaluate_a_model_whose_input_the_data_do_not_fit_names_the_layer(tmp_path, capsys):
    import minicnn as mc
    folder = make_folder(tmp_path / "photos", per_class=3)                 # RGB photos
    mc.save(str(tmp_path / "grey.npz"), mc.models.alexnet_small(num_classes=2, in_channels=1))
    code, _, err = run(capsys, "evaluate", str(tmp_path / "grey.npz"), "--dataset", f"folder:{folder}")
    assert code == 2 and "conv1" in one_error_line(err)


def test_evaluate_the_transfer_demos_pretrained_network(tmp_path):
    import argparse
    import minicnn as mc
    import minicnn.data as D
    from minicnn import transfer
    from minicnn.cli import transfer_demo
    images, labels = D.stack(D.mnist5k()[1])
    low = labels < 5
    mc.manual_seed(5)
    pretrained = transfer_demo.he_init(mc.models.alexnet_small(num_classes=5))
    transfer_demo.save_pretrained(str(tmp_path / "pretrained.npz"), pretrained,
                                  argparse.Namespace(seed=0, pretrain_epochs=3), images[low], labels[low])
    code, out, err = shell("evaluate", str(tmp_path / "pretrained.npz"))
    assert code == 0, err
    assert "(502 images of its 5 classes (the dataset's 5, 6, 7, 8, 9 left out), centre crop, epoch 3)" in out
    # the number the demo prints as "pretrained test error on the digits 0-4"
    assert f"top-1 error {transfer.error_rate(pretrained, images[low], labels[low]):.2%}" in out
    code, _, err = shell("evaluate", str(tmp_path / "pretrained.npz"), "--data-root", str(tmp_path))
    assert code == 2 and "mnist5k is not a dataset in a folder of yours" in one_error_line(err)
    assert mc.weights.load(mc.models.alexnet_small(num_classes=5), str(tmp_path / "pretrained.npz")).loaded


def test_evaluate_a_folder_that_moved_with_data_root(tmp_path, capsys):
    import shutil
    folder = make_folder(tmp_path / "photos")
    code, _, _ = train_folder(capsys, folder, tmp_path / "run")
    assert code == 0
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    code, before, _ = run(capsys, "evaluate", checkpoint)
    assert code == 0
    shutil.move(str(folder), str(tmp_path / "moved"))
    code, _, err = run(capsys, "evaluate", checkpoint)
    assert code == 2 and "12 missing" in one_error_line(err) and "--data-root DIR" in err
    code, after, _ = run(capsys, "evaluate", checkpoint, "--data-root", str(tmp_path / "moved"))
    assert code == 0 and after == before
    code, _, err = run(capsys, "evaluate", checkpoint, "--dataset", "digits")
    assert code == 2 and "leave out --dataset digits" in one_error_line(err)
