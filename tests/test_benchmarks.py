"""benchmarks/conv_bench.py runs after README's install, checks its options, writes under runs/;
benchmarks/alexnet_bench.py's CPU form runs both halves of the GPU round's step benchmark."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "conv_bench.py"


def load_conv_bench():
    spec = importlib.util.spec_from_file_location("conv_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conv_bench_runs_one_layer_on_the_cpu_and_writes_json(tmp_path, capsys):
    conv_bench = load_conv_bench()
    out = tmp_path / "bench.json"
    conv_bench.main(["--device", "cpu", "--layers", "conv3", "--batch", "1", "--repeats", "1", "--warmup", "0",
                     "--json", str(out)])
    report = json.loads(out.read_text())
    assert {r["layer"] for r in report["results"]} == {"conv3"}
    assert {r["impl"] for r in report["results"]} >= {"numpy-reference", "gemm-only(numpy)"}
    assert "conv3" in capsys.readouterr().out


def test_conv_bench_refuses_an_unknown_layer_naming_the_valid_ones(capsys):
    conv_bench = load_conv_bench()
    with pytest.raises(SystemExit) as e:
        conv_bench.main(["--layers", "conv9"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'conv9'" in err and all(f"'conv{i}'" in err for i in range(1, 6))


def test_conv_bench_writes_its_default_file_under_runs_which_git_ignores():
    default = load_conv_bench().build_parser().parse_args([]).json
    assert Path(default).parts[0] == "runs" and default.endswith(".json")
    assert "runs/" in (ROOT / ".gitignore").read_text().split()


def test_conv_bench_uses_the_installed_minicnn_not_the_source_tree_beside_it(tmp_path):
    """README's install is not editable: the source tree has no compiled _host, so a script
    that put the checkout first on sys.path would import that tree (bug: 'needs the compiled
    extension'). Here the "installed" package is this one, on PYTHONPATH; the checkout beside
    the script is a decoy that fails when imported."""
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "benchmarks" / "conv_bench.py")
    (checkout / "minicnn").mkdir()
    (checkout / "minicnn" / "__init__.py").write_text("raise ImportError('the source tree was imported')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "benchmarks/conv_bench.py", "--device", "cpu", "--layers", "conv5",
                             "--batch", "1", "--repeats", "1", "--warmup", "0", "--json", ""],
                            cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "conv5" in result.stdout


def test_a_missing_host_extension_says_which_command_builds_it(monkeypatch):
    from minicnn.backends import host
    monkeypatch.setattr(host, "_host", None)
    monkeypatch.setattr(host, "_import_error", ImportError("No module named 'minicnn._host'"), raising=False)
    with pytest.raises(RuntimeError, match=r"pip install -e .*build_ext --inplace"):
        host.HostLoader().run("relu_forward", 1)


# --------------------------------------------------------------------------- benchmarks/alexnet_bench.py
def load_alexnet_bench():
    spec = importlib.util.spec_from_file_location("alexnet_bench", ROOT / "benchmarks" / "alexnet_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL_STEP = ["--device", "cpu", "--batch", "2", "--warmup", "0", "--repeats", "1"]


def test_alexnet_bench_times_both_halves_on_the_cpu_and_merges_them(tmp_path, capsys):
    """The GPU round's two halves (PyTorch while minicnn._cuda compiles, then minicnn), in the CPU form."""
    pytest.importorskip("torch", reason="the PyTorch runners need torch")
    pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")
    bench = load_alexnet_bench()
    torch_half, both = tmp_path / "torch.json", tmp_path / "step.json"
    assert bench.main(SMALL_STEP + ["--runners", "torch-onednn", "torch-im2col", "--json", str(torch_half)]) == 0
    assert bench.main(SMALL_STEP + ["--runners", "minicnn-kernels", "--merge", str(torch_half), "--json", str(both)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"minicnn / oneDNN-fp32 = \d+\.\d\d; minicnn / torch-im2col = \d+\.\d\d", last), last
    report = json.loads(both.read_text())
    assert report["batch"] == 2 and report["sgd"] == {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    assert list(report["results"]) == ["torch-onednn", "torch-im2col", "minicnn-kernels"]
    for result in report["results"].values():
        assert result["ms"] > 0 and result["images_per_s"] > 0 and np.isfinite(result["first_loss"])
        assert result["peak_memory_bytes"] is None               # GPU memory: none on the CPU
    kernels = {k["kernel"] for k in report["results"]["minicnn-kernels"]["trace"]["kernels"]}
    assert {"gemm", "im2col", "col2im", "lrn_forward", "sgd_update"} <= kernels
    ours, peer = report["results"]["minicnn-kernels"]["ms"], report["results"]["torch-im2col"]["ms"]
    assert report["ratios"]["minicnn / torch-im2col"] == pytest.approx(ours / peer)


def test_alexnet_bench_refuses_what_it_cannot_compare(tmp_path):
    bench = load_alexnet_bench()
    with pytest.raises(SystemExit, match="minicnn-rawkernel cannot run on the CPU"):
        bench.main(SMALL_STEP + ["--runners", "minicnn-rawkernel"])
    other = tmp_path / "batch4.json"
    other.write_text(json.dumps(dict(device="cpu", device_name="x", batch=4, tf32=False, results={})))
    with pytest.raises(SystemExit, match="its device_name is 'x'"):
        bench.main(SMALL_STEP + ["--runners", "minicnn-kernels", "--merge", str(other)])


def test_alexnet_bench_a_runner_that_cannot_run_is_an_error_when_named(tmp_path, monkeypatch, capsys):
    from minicnn.backends import host
    monkeypatch.setattr(host, "_host", None)
    monkeypatch.setattr(host, "_import_error", ImportError("No module named 'minicnn._host'"), raising=False)
    bench = load_alexnet_bench()
    out = tmp_path / "step.json"
    assert bench.main(SMALL_STEP + ["--runners", "minicnn-kernels", "--json", str(out)]) == 1
    assert "minicnn._host" in json.loads(out.read_text())["results"]["minicnn-kernels"]["error"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "minicnn / oneDNN-fp32 = n/a (no minicnn result); minicnn / torch-im2col = n/a (no minicnn result)")
