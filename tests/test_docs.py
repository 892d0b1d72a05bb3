"""Every command in README.md and docs/*.md is checked here, so the docs cannot go stale.

Each command the docs show (in a code block, or inline as `python ...` / `pip ...`) must
have an entry in CHECKS, saying how it is checked; a command without one, or an entry
whose command the docs no longer show, fails the test. The kinds of check:

  run    run as written, in this process; what the docs promise it prints is checked
  small  run with small settings, because as written it takes minutes (full training):
         the settings used are in the entry
  parse  its options are parsed by the command's own parser (so a renamed or removed
         option fails), because running it takes minutes even when small, or needs
         what CI has not (gdb, a GPU); what it does is tested elsewhere, as the entry says
  setup  installing and building: the extras, variables and versions it names must
         exist in setup.py / .ci/run (CI itself runs README's test install)

Also: the Python examples compile and name only things minicnn has (README's runs as
written), every repository path the docs name exists, and every MINICNN_* variable they
mention is read by the code.
"""

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

import minicnn as mc
from minicnn import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
COMMAND_STARTS = ("python ", "python3 ", "pip ", "MINICNN_", ". ", "scripts/", "mpiexec ", "tensorboard ")


def code_blocks(path):
    """(language, text) of each fenced block of a Markdown file."""
    return re.findall(r"```(\w*)\n(.*?)```", path.read_text(), re.S)


def doc_commands():
    """{command as written (comment stripped): the file it is in}."""
    found = {}
    for path in DOCS:
        for language, body in code_blocks(path):
            if language == "python":
                continue
            for line in body.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line.startswith(COMMAND_STARTS) and not re.match(r"^MINICNN_\w+=\S+$", line):
                    for command in line.split(" && "):
                        found[command.strip()] = path.name
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for inline in re.findall(r"`([^`\n]+)`", text):
            if inline.startswith(("python ", "pip ")):
                found[inline] = path.name
    return found


CHECKPOINT = "runs/<timestamp>/checkpoint.npz"

# command as the docs write it: (kind, how it is checked)
CHECKS = {
    # ---- README's install and the main job
    "python3 -m venv .venv": ("setup", "the standard library's venv"),
    ". .venv/bin/activate": ("setup", "the venv's own script"),
    'pip install -e ".[train]"': ("setup", "the extra 'train' exists in setup.py; -e builds minicnn._host "
                                            "inside the checkout, which 'python -m minicnn' run there imports"),
    "python -m minicnn train": ("small", "--dataset digits --epochs 1 --batch-size 32 (the fixture below; "
                                         "15 epochs on mnist5k take minutes); parsed as written too"),
    "python -m minicnn train --help": ("run", "help text"),
    # ---- stopping, resuming, one run per folder (README, docs/training.md)
    "python -m minicnn train --out runs/a --resume": ("small", "tests/test_train_runs.py resumes runs of --dataset "
                                                               "digits --epochs 3 (this form: the main job's "
                                                               "15 epochs); parsed as written"),
    "python -m minicnn train --dataset digits --epochs 3 --out runs/a": (
        "small", "tests/test_train_runs.py runs it with a temporary --out, in a real process, and stops it with a "
                 "real SIGINT (Ctrl-C) or kill -9 after its first epoch; parsed as written"),
    "python -m minicnn train --dataset digits --epochs 3 --out runs/a --resume": (
        "small", "tests/test_train_runs.py resumes those runs (temporary --out) and compares metrics.json and the "
                 "weights with a run that never stopped; parsed as written"),
    "python -m minicnn train --dataset digits --epochs 3 --out runs/a --overwrite": (
        "small", "tests/test_train_runs.py replaces a run with it (temporary --out, --epochs 1); parsed as written"),
    # ---- TensorBoard logs (docs/training.md)
    'pip install -e ".[train,tensorboard]"': ("setup", "the extras 'train' and 'tensorboard' exist; 'test' includes "
                                                       "'tensorboard', so CI installs it"),
    "python -m minicnn train --tensorboard runs/tb": ("small", "tests/test_tensorboard.py runs it with --dataset "
                                                              "digits --epochs 1 and reads the logs back; parsed as "
                                                              "written"),
    "tensorboard --logdir runs/tb": ("setup", "TensorBoard's own command, from the package the extra 'tensorboard' "
                                              "lists; tests/test_tensorboard.py reads the logs with its reader"),
    # ---- other commands
    f"python -m minicnn evaluate {CHECKPOINT} [--ten-crop]": ("run", "both forms, on the fixture's checkpoint"),
    f"python -m minicnn evaluate {CHECKPOINT}": ("run", "on the fixture's checkpoint"),
    f"python -m minicnn evaluate {CHECKPOINT} --ten-crop": ("run", "on the fixture's checkpoint"),
    "python -m minicnn evaluate model.npz --dataset digits": ("parse", "tests/test_cli.py runs it on a zoo model "
                                                                      "saved with mc.save"),
    "python -m minicnn evaluate model.npz --dataset mnist5k": ("parse", "as above"),
    "python -m minicnn evaluate model.npz --dataset mnist5k --model alexnet_small": (
        "parse", "tests/test_cli.py runs --model on a network built by hand with alexnet_small's layers"),
    f"python -m minicnn evaluate {CHECKPOINT} --data-root DIR": ("parse", "tests/test_cli.py moves a folder run's "
                                                                         "photos and evaluates it with --data-root"),
    "python -m minicnn evaluate runs/transfer/pretrained.npz": ("parse", "tests/test_cli.py runs it on a pretrained.npz "
                                                                         "the demo's save_pretrained wrote"),
    "python -m minicnn summary alexnet": ("run", "prints 60,965,224"),
    "python -m minicnn summary vgg16 --input-shape 3 64 64": ("run", "prints 138,357,544"),
    "python -m minicnn summary alexnet_small --input-shape 3 32 32": ("run", "prints the rebuilt model"),
    "python -m minicnn transfer": ("parse", "minutes even with one draw; tests/test_transfer.py tests its pieces"),
    "python -m minicnn transfer --out runs/transfer": ("parse", "as above"),
    "python -m minicnn transfer --help": ("run", "help text"),
    "python benchmarks/conv_bench.py --layers conv3": ("small", "--batch 1 --repeats 1 --warmup 0, no JSON"),
    f"python -m minicnn export {CHECKPOINT} model.onnx": ("run", "on the fixture's checkpoint; ONNX Runtime "
                                                                  "runs the file in tests/test_cli.py"),
    "python -m minicnn graph alexnet_small": ("run", "with --out in a temporary folder"),
    "python -m minicnn explain conv2d": ("run", "prints the three definitions' files"),
    f"python -m minicnn explore {CHECKPOINT} --image digit.png --out page.html": (
        "run", "on the fixture's checkpoint and a digit; tests/test_explore.py opens such pages in Chromium"),
    "python -m minicnn explore model.onnx --image digit.png --out page.html --mean 0.3055 --std 0.3760": (
        "run", "on the file the export command wrote from the fixture's checkpoint"),
    "python scripts/explore_screenshot.py page.html docs/explore.png --unit conv2:35,6,5": (
        "run", "tests/test_explore.py runs it on a page in a temporary folder, where chromium is installed"),
    "python -m minicnn trace alexnet --batch 8": ("run", "as written (two steps of the paper's AlexNet, seconds)"),
    "python -m minicnn trace alexnet --batch 8 --device cuda": ("parse", "GPU only; tests/test_trace.py runs the "
                                                                         "command on the CPU, test_no_sync.py the "
                                                                         "trace on a fake GPU"),
    "python -m minicnn trace alexnet --batch 128 --device cuda": ("parse", "GPU only; scripts/gpu_round.sh's trace step "
                                                                           "runs it on each loader"),
    "python examples/backprop_tour.py": ("run", "tests/test_examples.py runs it, and the notebook with nbclient"),
    "python examples/transfer_like_keras.py": ("run", "tests/test_examples.py runs it and checks what it prints"),
    'pip install "minicnn[onnx]"': ("setup", "the extra 'onnx' exists in setup.py"),
    "pip install netron": ("setup", "a PyPI package for viewing ONNX files; not a dependency"),
    "python benchmarks/conv_bench.py [--batch N] [--layers conv3 conv5]": ("small", "--batch 1 --layers conv3 conv5"),
    # ---- several processes (docs/distributed.md)
    'pip install -e ".[train,distributed]"': ("setup", "the extras 'train' and 'distributed' exist; .ci/run installs "
                                                       "'distributed'"),
    "mpiexec -n 2 python -m minicnn train": ("small", "tests/test_distributed.py runs it under mpiexec -n 2 with "
                                                      "--dataset digits --epochs 1 --batch-size 128; parsed as written"),
    "mpiexec --oversubscribe -n 2 python -m minicnn train --epochs 1": ("small", "as above"),
    "python benchmarks/scaling.py": ("small", "tests/test_distributed.py: --rounds 1 --steps 1 --warmup 0 --batch 4; "
                                              "parsed as written"),
    "python benchmarks/scaling.py --rounds 5": ("small", "as above"),
    "python benchmarks/data_loading.py": ("small", "--images 24 --batch-size 8 --epochs 1 --workers 0 2"),
    "python benchmarks/cpu_step.py [--profile] [--json FILE]": ("small", "--networks small --runners reference "
                                                                         "kernels --repeats 1 --warmup 0, then with "
                                                                         "--profile and --json"),
    "python benchmarks/cpu_step.py --threads 2 1 --repeats 9": ("small", "as above, with --threads 2 1"),
    "python benchmarks/cpu_ops.py": ("small", "--networks small --runners kernels reference --repeats 1 --warmup 0, "
                                              "then --markdown of its JSON"),
    # ---- dev/'s numbered kernel variants
    "python dev/im2col.py 7": ("small", "--batch 1 --repeats 1 --warmup 0: the checks against the reference in full"),
    "python dev/im2col.py 1 --threads 1": ("small", "as above"),
    "python dev/im2col.py 7 --device cuda": ("parse", "GPU only; variant 7's kernels are the ones checked above"),
    "python dev/im2col.py 3": ("small", "as above: the scatter within its bound, and twice the same bits on the host"),
    "python dev/im2col.py 3 --device cuda": ("parse", "GPU only; tests/test_nvcc_compile.py compiles the scatter with "
                                                      "NVRTC and finds its atomic adds"),
    "python dev/im2col.py 2 --threads 1 --repeats 20": ("small", "as above"),
    "python dev/im2col.py 1 --threads 1 --repeats 5": ("small", "as above"),
    "python dev/lrn.py 5": ("small", "--batch 1 --repeats 1 --warmup 0: the checks against the reference in full"),
    "python dev/lrn.py 2": ("small", "as above"),
    "python dev/lrn.py 1 --threads 1": ("small", "as above"),
    "python dev/lrn.py 1 --threads 1 --repeats 20": ("small", "as above"),
    "python dev/lrn.py 5 --device cuda": ("parse", "GPU only; tests/test_nvcc_compile.py compiles the variants with "
                                                   "NVRTC as the driver hands them to CuPy"),
    "python dev/pool.py 3": ("small", "--batch 1 --repeats 1 --warmup 0: the checks against the reference in full"),
    "python dev/pool.py 1 --threads 1": ("small", "as above"),
    "python dev/pool.py 3 --device cuda": ("parse", "GPU only; tests/test_nvcc_compile.py compiles the variants with "
                                                    "NVRTC as the driver hands them to CuPy"),
    # ---- tests and building
    'pip install -e ".[test]"': ("setup", "the extra 'test' exists; .ci/run runs exactly this"),
    "python -m pytest -q -rs": ("setup", ".ci/run runs exactly this"),
    "pip install torch==2.13.0": ("setup", ".ci/run pins the same version"),
    "pip install h5py": ("setup", "the package mc.weights.load needs for Keras .h5 files, in the keras and test "
                                  "extras; tests/test_keras_weights.py reads the files Keras writes"),
    "pip install -e .": ("setup", "setup.py builds _host"),
    "MINICNN_BUILD_CUDA=1 pip install -e .": ("setup", "setup.py reads MINICNN_BUILD_CUDA"),
    "pip install --no-build-isolation --no-deps -e .": ("setup", "plain pip options"),
    "pip install -v": ("setup", "plain pip option"),
    "python setup.py build_ext --inplace": ("setup", "setup.py's BuildExt"),
    "python -m pytest tests -m gpu": ("parse", "GPU only; the marker 'gpu' is registered, and "
                                               "scripts/gpu_round.sh runs its files step by step (dry-run on CI)"),
    "scripts/gpu_round.sh [--dry-run] [OUTDIR]": ("parse", "GPU only; the usage line below; tests/test_gpu_round.py "
                                                           "runs --dry-run on CI"),
    "python benchmarks/alexnet_bench.py": ("parse", "GPU by default; tests/test_benchmarks.py runs its CPU form, both "
                                                    "halves merged"),
    "python benchmarks/alexnet_bench.py --tf32": ("parse", "as above"),
    "python benchmarks/alexnet_bench.py --device cpu --batch 2": ("parse", "as above: tests/test_benchmarks.py runs it "
                                                                           "with --warmup 0 --repeats 1"),
    # ---- stepping through a kernel (docs/kernels.md)
    "MINICNN_DEBUG_BUILD=1 pip install -e .": ("setup", "setup.py reads MINICNN_DEBUG_BUILD; tests/test_debug_build.py "
                                                       "checks the flags it switches"),
    "MINICNN_DEBUG_BUILD=1 python setup.py build_ext --inplace": ("setup", "as above; tests/test_debug_build.py builds "
                                                                          "with it into a temporary folder"),
    "MINICNN_NUM_THREADS=1 gdb -batch -ex 'set breakpoint pending on' -ex 'break max_pool_forward<float>' -ex run "
    "-ex 'break +2 if row * 2 + ox == 3' -ex continue -ex 'print row' -ex 'print oy' -ex 'print ox' "
    "--args python examples/step_into_max_pool.py": ("run", "tests/test_debug_build.py runs it as written on a debug "
                                                            "build (where gdb is installed) and checks what it prints "
                                                            "against the docs; the breakpoint names a kernel of "
                                                            "MC_FOR_EACH_KERNEL"),
}


def test_every_documented_command_has_a_check_and_every_check_a_command():
    documented = doc_commands()
    unchecked = {c: f for c, f in documented.items() if c not in CHECKS}
    assert not unchecked, f"commands in the docs without a check in tests/test_docs.py: {unchecked}"
    stale = [c for c in CHECKS if c not in documented]
    assert not stale, f"checks of commands the docs no longer show: {stale}"


def minicnn_argv(command):
    """The arguments after 'python -m minicnn', placeholders filled, brackets dropped."""
    words = shlex.split(command.replace("[", "").replace("]", ""))
    assert words[:3] == ["python", "-m", "minicnn"], command
    return words[3:]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The main job with small settings: its checkpoint stands in for runs/<timestamp>/."""
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--out", str(out)]) == 0
    return out


def test_minicnn_commands_parse_as_written():
    for command in CHECKS:
        python = command[command.index("python -m minicnn"):] if "python -m minicnn" in command else None
        if python is None:
            continue
        argv = minicnn_argv(python.replace(CHECKPOINT, "x.npz"))
        if "--help" in argv:
            continue
        args = cli.build_parser().parse_args(argv)
        if argv[0] == "transfer":   # its options are also checked against the digits' labels
            from minicnn.cli import transfer_demo
            transfer_demo.check_options(args, digit_labels=__import__("numpy").repeat(range(10), 50))


def test_the_main_job_small_and_its_evaluate_commands(digits_run, capsys):
    for name in ("metrics.json", "checkpoint.npz", "curves.png", "conv1_filters.png", "predictions.png"):
        assert (digits_run / name).is_file()
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert 0 <= metrics["test_top5_error"] <= metrics["test_top1_error"] <= 1 and metrics["test_images"] == 359
    assert len(metrics["history"]["epoch"]) == 1
    assert mc.load(str(digits_run / "checkpoint.npz"))["extra"]["test_set"]["images"] == 359   # evaluate checks it
    capsys.readouterr()
    forms = set()   # the docs show the same two forms several times: each runs once
    runs = [c for c, (kind, _) in CHECKS.items() if kind == "run"]   # the other forms: tests/test_cli.py
    for command in (c for c in runs if c.startswith("python -m minicnn evaluate")):
        for ten_crop in ((False, True) if "[--ten-crop]" in command else ("--ten-crop" in command,)):
            argv = [a for a in minicnn_argv(command) if a != "--ten-crop"] + (["--ten-crop"] if ten_crop else [])
            forms.add(tuple(str(digits_run / "checkpoint.npz") if a == CHECKPOINT else a for a in argv))
    assert len(forms) == 2
    for argv in sorted(forms):
        assert cli.main(list(argv)) == 0, argv
        printed = capsys.readouterr().out
        # the same model on the same test set as training measured; digits are never mirrored
        assert ("five-crop" in printed) if "--ten-crop" in argv else \
            (f"top-1 error {metrics['test_top1_error']:.2%}" in printed)


@pytest.mark.parametrize("command, promise", [
    ("python -m minicnn summary alexnet", "total parameters: 60,965,224"),
    ("python -m minicnn summary vgg16 --input-shape 3 64 64", "total parameters: 138,357,544"),
    ("python -m minicnn summary alexnet_small --input-shape 3 32 32", "input: 3x32x32"),
])
def test_summary_commands_run_as_written(command, promise, capsys):
    assert cli.main(minicnn_argv(command)) == 0
    assert promise in capsys.readouterr().out


def test_export_graph_and_explain_commands_run_as_written(digits_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'minicnn[onnx]')")
    monkeypatch.chdir(tmp_path)
    export = next(c for c in CHECKS if c.startswith("python -m minicnn export"))
    argv = [str(digits_run / "checkpoint.npz") if a == CHECKPOINT else a for a in minicnn_argv(export)]
    assert cli.main(argv) == 0 and (tmp_path / "model.onnx").is_file()
    assert cli.main(minicnn_argv("python -m minicnn graph alexnet_small")) == 0
    assert (tmp_path / "runs" / "graph_alexnet_small.png").is_file()
    capsys.readouterr()
    assert cli.main(minicnn_argv("python -m minicnn explain conv2d")) == 0
    assert "csrc/im2col.cuh" in capsys.readouterr().out


def test_explore_commands_run_as_written(digits_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'minicnn[onnx]')")
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    Image.fromarray((__import__("numpy").eye(28) * 255).astype("uint8")).save("digit.png")
    export = next(c for c in CHECKS if c.startswith("python -m minicnn export"))
    assert cli.main([str(digits_run / "checkpoint.npz") if a == CHECKPOINT else a for a in minicnn_argv(export)]) == 0
    for command in (c for c in CHECKS if c.startswith("python -m minicnn explore")):
        argv = [str(digits_run / "checkpoint.npz") if a == CHECKPOINT else a for a in minicnn_argv(command)]
        assert cli.main(argv) == 0, command
        assert "wrote page.html" in capsys.readouterr().out
        (tmp_path / "page.html").unlink()


def test_trace_command_runs_as_written(capsys):
    assert cli.main(minicnn_argv("python -m minicnn trace alexnet --batch 8")) == 0
    out = capsys.readouterr().out
    assert "on 8 images of 3x227x227" in out and "Conv2d conv1 forward" in out and "fc8" in out
    assert "SGD.step" in out and "by kernel" in out


@pytest.mark.parametrize("command", ["python -m minicnn train --help", "python -m minicnn transfer --help"])
def test_help_commands_run_as_written(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(minicnn_argv(command))
    assert e.value.code == 0 and "default" in capsys.readouterr().out


def _script(folder, name):
    """A script of benchmarks/ or dev/, imported as a module (its folder on sys.path while it loads)."""
    import importlib
    sys.path.insert(0, str(ROOT / folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / folder))


def test_conv_bench_commands_with_small_settings(tmp_path, capsys):
    conv_bench = _script("benchmarks", "conv_bench")
    for command in (c for c in CHECKS if c.startswith("python benchmarks/conv_bench.py")):
        layers = re.search(r"--layers ([\w ]+?)\]?$", command).group(1).split()
        conv_bench.main(["--device", "cpu", "--layers", *layers, "--batch", "1", "--repeats", "1", "--warmup", "0",
                         "--json", ""])
        printed = capsys.readouterr().out
        assert all(layer in printed for layer in layers)


def test_alexnet_bench_commands_parse_as_written():
    alexnet_bench = _script("benchmarks", "alexnet_bench")
    for command in (c for c in CHECKS if c.startswith("python benchmarks/alexnet_bench.py")):
        alexnet_bench.build_parser().parse_args(shlex.split(command)[2:])


def test_scaling_benchmark_commands_parse_as_written():
    scaling = _script("benchmarks", "scaling")
    for command in (c for c in CHECKS if c.startswith("python benchmarks/scaling.py")):
        scaling.build_parser().parse_args(shlex.split(command)[2:])
def test_cpu_step_commands_with_small_settings(tmp_path, capsys):
    cpu_step = _script("benchmarks", "cpu_step")
    small = ["--networks", "small", "--runners", "reference", "kernels", "--repeats", "1", "--warmup", "0"]
    cpu_step.main(small)
    assert "small" in capsys.readouterr().out
    cpu_step.main(small + ["--threads", "2", "1", "--profile", "--json", str(tmp_path / "step.json")])
    assert "where the kernels backend's small step goes" in capsys.readouterr().out
    results = json.loads((tmp_path / "step.json").read_text())["results"]
    assert list(results) == ["2", "1"]
    assert [set(networks["small"]) for networks in results.values()] == [{"reference", "kernels"}] * 2


def test_data_loading_benchmark_with_small_settings(tmp_path, capsys):
    data_loading = _script("benchmarks", "data_loading")
    data_loading.main(["--images", "24", "--batch-size", "8", "--epochs", "1", "--workers", "0", "2",
                       "--json", str(tmp_path / "loading.json")])
    printed = capsys.readouterr().out
    assert "0 workers:" in printed and "2 workers:" in printed
    rows = json.loads((tmp_path / "loading.json").read_text())["rows"]
    assert [r["workers"] for r in rows] == [0, 2] and all(r["images"] == 24 for r in rows)


def test_cpu_ops_times_every_layer_both_ways_and_renders_its_table(tmp_path, capsys):
    cpu_ops = _script("benchmarks", "cpu_ops")
    out = tmp_path / "ops.json"
    cpu_ops.main(["--networks", "small", "--runners", "kernels", "reference", "--repeats", "1", "--warmup", "0",
                  "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    layers = [name for name, _ in mc.models.alexnet_small().named_children() if name != "flatten"]
    assert [r["layer"] for r in rows if r["direction"] == "fwd"] == layers + ["loss", "sgd"]
    assert [r["layer"] for r in rows if r["direction"] == "bwd"] == layers + ["loss"]
    assert all(r["kernels"] > 0 and r["reference"] > 0 and "torch" not in r for r in rows)
    capsys.readouterr()
    cpu_ops.main(["--markdown", str(out)])
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + len(rows) and table[2].startswith("| small | conv1 conv2d | fwd | 64x1x28x28 |")


# each dev/ driver: the last layer its table prints
DEV_LAST_LAYER = {"im2col": "conv5", "lrn": "lrn2", "pool": "alexnet pool5"}


def test_dev_commands_with_small_settings(capsys):
    for command in (c for c in CHECKS if c.startswith("python dev/")):
        name = re.match(r"python dev/(\w+)\.py ", command).group(1)
        driver = _script("dev", name)
        argv = shlex.split(command)[2:]
        if "cuda" in argv:
            assert driver.options().parse_args(argv).device == "cuda"
            continue
        assert driver.main(argv + ["--batch", "1", "--repeats", "1", "--warmup", "0"]) == 0
        printed = capsys.readouterr().out
        assert DEV_LAST_LAYER[name] in printed and "MISMATCH" not in printed, command
        assert " ok (largest error" in printed, command


def test_setup_commands_name_what_exists():
    setup = (ROOT / "setup.py").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras_table = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    ci = (ROOT / ".ci" / "run").read_text()
    for command, (kind, _) in CHECKS.items():
        for extras in re.findall(r'"(?:\.|minicnn)\[([\w,]+)\]"', command):
            for extra in extras.split(","):
                assert re.search(rf"^{extra} = \[", extras_table, re.M), f"{command}: pyproject.toml has no extra {extra!r}"
        for variable in re.findall(r"\b(MINICNN_\w+)=", command):
            assert variable in setup or variable in _code_text(), command
    assert 'pip install -e ".[test]"' in ci and "python -m pytest -q -rs" in ci
    assert 'pip install -e ".[test,distributed]"' in ci
    assert re.search(r'^tensorboard = \[.*"tensorboard"', extras_table, re.M), "the extra lacks TensorBoard"
    assert re.search(r'^test = \["minicnn\[[\w,]*tensorboard', extras_table, re.M), "CI would skip test_tensorboard"
    assert "torch==2.13.0" in ci
    assert '"h5py"' in re.search(r"^keras = \[.*\]", extras_table, re.M).group(0), "the keras extra must bring h5py"
    assert '"markers", "gpu:' in (ROOT / "tests" / "conftest.py").read_text(), "the marker 'gpu' is not registered"
    usage = re.search(r'echo "usage: (scripts/gpu_round.sh [^(]+?)\s+\(', (ROOT / "scripts" / "gpu_round.sh").read_text())
    for command in (c for c in CHECKS if c.startswith("scripts/gpu_round.sh")):
        assert command == usage.group(1), f"{command}: scripts/gpu_round.sh's usage is {usage.group(1)!r}"
    gdb = next(c for c in CHECKS if "gdb" in c)
    from minicnn.backends.sources import kernel_names
    assert re.search(r"break (\w+)<float>", gdb).group(1) in kernel_names()


def _code_text():
    files = list((ROOT / "minicnn").rglob("*.py")) + [ROOT / "setup.py"] + list((ROOT / "scripts").glob("*"))
    return "\n".join(f.read_text() for f in files if f.is_file())


def test_every_minicnn_variable_the_docs_name_is_read_by_the_code():
    code = _code_text()
    named = {v for path in DOCS for v in re.findall(r"\bMINICNN_[A-Z_]+[A-Z]\b", path.read_text())}
    assert named and not [v for v in named if v not in code]


def test_every_repository_path_the_docs_name_exists():
    # made by setup.py: csrc/ copied for a regular install, the extensions (_cuda only where nvcc and a GPU are)
    built_at_install = {"minicnn/csrc/", "minicnn/_host*.so", "minicnn/_cuda*.so"}
    missing = []
    for path in DOCS:
        for name in re.findall(r"\b(?:minicnn|csrc|src|benchmarks|tests|scripts|docs|examples|dev)/[\w./*-]*",
                               path.read_text()):
            name = name.rstrip(".")
            if name in built_at_install:
                continue
            if not (list(ROOT.glob(name)) if "*" in name else (ROOT / name).exists()):
                missing.append(f"{path.name}: {name}")
    assert not missing, missing


def python_blocks():
    return [(path.name, body) for path in DOCS for language, body in code_blocks(path) if language == "python"]


@pytest.mark.parametrize("where, code", python_blocks(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(python_blocks())])
def test_python_examples_compile_and_name_what_minicnn_has(where, code):
    compile(code, where, "exec")
    import minicnn.data as D
    import minicnn.functional as F
    from minicnn import transfer
    aliases = {"mc": mc, "D": D, "F": F, "transfer": transfer}
    for alias, dotted in re.findall(r"\b(mc|D|F|transfer)\.([A-Za-z_][\w.]*\w)", code):
        value = aliases[alias]
        for part in dotted.split("."):
            assert hasattr(value, part), f"{where}: {alias}.{dotted} does not exist"
            value = getattr(value, part)


def test_readme_example_runs_as_written(capsys):
    (_, code), = [(p, c) for p, c in python_blocks() if p == "README.md"]
    exec(compile(code, "README.md", "exec"), {})
    assert "60,965,224" in capsys.readouterr().out


# The speed tables of README.md and docs/kernels.md are the benchmarks' own rendering of the runs
# committed in benchmarks/results/cpu-2core/: a table edited by hand, or a run committed without its
# table, fails here.
RESULT_TABLES = [
    ("README.md", "cpu_step", "cpu_step.json"),
    ("docs/kernels.md", "cpu_ops", "cpu_ops.json"),
    ("docs/kernels.md", "cpu_ops", "cpu_ops_before.json"),
]


@pytest.mark.parametrize("doc, script, result", RESULT_TABLES)
def test_speed_tables_are_rendered_from_the_committed_runs(doc, script, result, capsys):
    _script("benchmarks", script).main(["--markdown", str(ROOT / "benchmarks" / "results" / "cpu-2core" / result)])
    table = capsys.readouterr().out.strip()
    assert table.count("\n") >= 3
    assert table in (ROOT / doc).read_text(), (
        f"{doc} does not hold the table of benchmarks/results/cpu-2core/{result}: paste the output of "
        f"python benchmarks/{script}.py --markdown benchmarks/results/cpu-2core/{result}")
