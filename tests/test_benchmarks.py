"""benchmarks/conv_bench.py runs after README's install, checks its options, writes under runs/."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
