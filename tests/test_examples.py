"""examples/: the backprop tour runs as a script and as a notebook, and the two hold the same cells."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn.backends import host

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "backprop_tour.py"
NOTEBOOK = SCRIPT.with_suffix(".ipynb")


def make_notebook():
    spec = importlib.util.spec_from_file_location("make_notebook", ROOT / "scripts" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_the_tour_printed(text):
    assert "total parameters: 1,322" in text                    # the tiny network's summary
    assert "the drawing: 9 ops and 6 parameters" in text
    assert "summary:" in text and "by kernel" in text and "SGD.step" in text
    if host.available():
        assert "conv1 forward : im2col -> gemm" in text
        conv1_backward = text.split("conv1 backward: ")[1].splitlines()[0]
        assert "gemm" in conv1_backward and "col2im" not in conv1_backward
        assert "col2im" in text.split("conv2 backward: ")[1].splitlines()[0]
        assert "loss: reference" in text and "kernels" in text
    else:
        assert "the 'kernels' backend is not available here" in text
    assert "local_response_norm: True" in text and "WrongCube fails, as it should" in text
    assert "training loss by epoch" in text


def test_the_notebook_holds_the_scripts_cells():
    cells = make_notebook().cells_of(SCRIPT.read_text())
    notebook = json.loads(NOTEBOOK.read_text())
    assert [(c["cell_type"], "".join(c["source"])) for c in notebook["cells"]] == cells, \
        "examples/backprop_tour.ipynb differs from the script: run python scripts/make_notebook.py " \
        "examples/backprop_tour.py"
    assert [kind for kind, _ in cells].count("code") == 7
    assert all(not c.get("outputs") for c in notebook["cells"])


def test_cells_of_a_script():
    cells = make_notebook().cells_of("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\nprint(x)\n")
    assert cells == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "print(x)")]
    with pytest.raises(ValueError, match="before the first"):
        make_notebook().cells_of("import os\n# %%\n")


def test_the_script_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    check_the_tour_printed(done.stdout)
    for picture in ("graph.png", "conv1_filters.png"):
        assert (tmp_path / "runs" / "backprop_tour" / picture).read_bytes().startswith(b"\x89PNG")


def test_the_notebook_runs(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (it is in the 'test' extra: "
                                                      "pip install -e '.[test]')")
    import nbformat
    monkeypatch.setenv("PYTHONPATH", str(ROOT))                 # the kernel imports this checkout's minicnn
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    check_the_tour_printed("".join(o.get("text", "") for o in outputs if o.output_type == "stream"))
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pictures) == 2                                   # the graph and conv1's filters, shown inline


def test_the_keras_tutorial_in_minicnn_runs(tmp_path):
    """examples/transfer_like_keras.py: every step of Keras's transfer-learning tutorial, on photos that ship
    with scikit-image and scikit-learn, in about a minute."""
    pytest.importorskip("skimage", reason="scikit-image is not installed (it is in the 'train' extra)")
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (it is in the 'train' extra)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "transfer_like_keras.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert "classes ['cat', 'not_cat']" in lines and lines["classes ['cat', 'not_cat']"].strip().startswith("80 training")
    assert "trainable parameters 65, frozen 72,528" in done.stdout          # base.trainable = False froze the base
    assert "fine-tuned from block3_conv1 (55,745 trainable parameters)" in done.stdout
    accuracy = lines["evaluate"].split("accuracy")[1].strip()
    assert f"reloaded: the same accuracy {accuracy}, classes ['cat', 'not_cat']" in done.stdout
    assert float(accuracy.rstrip("%")) >= 70                                  # well above chance (50%)
    assert any(line.startswith("predict ") for line in done.stdout.splitlines())
    assert (tmp_path / "runs" / "transfer_like_keras" / "model.npz").is_file()
