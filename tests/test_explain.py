"""mc.explain: each op's formula and the file:line of its three definitions, which must be right."""

import importlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F

explain_module = importlib.import_module("minicnn.explain")   # mc.explain is the function

ROOT = Path(explain_module.__file__).resolve().parent.parent


@pytest.mark.parametrize("op", sorted(explain_module.OPS))
def test_explain_names_files_that_exist_at_those_lines(op):
    out = io.StringIO()
    text = mc.explain(op, file=out)
    assert out.getvalue().strip() == text.strip()
    entries = re.findall(r"^\s+(naive|reference|kernel)\s+(\S+)\s+(\S+):(\d+)$", text, re.M)
    kinds = {kind for kind, *_ in entries}
    assert kinds == {"naive", "reference", "kernel"}, text
    for kind, name, path, line in entries:
        source = (ROOT / path).read_text().splitlines()[int(line) - 1]
        short = name.split(".")[-1]
        if kind == "kernel":
            assert re.match(rf"MC_KERNEL\s+{short}\s*\(", source), (path, line, source)
        else:
            assert re.match(rf"\s*def\s+{short}\s*\(", source), (path, line, source)
    assert "forward:" in text and "backward:" in text


# --------------------------------------------------------------------------- the kernels, as a trace sees them
def _run_once(op, backend):
    """``op`` once on a tiny input of ``backend``'s device: forward and backward (an update: one step)."""
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return backend.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    def forward_backward(y):
        y.backward(backend.array(np.ones(y.shape, np.float32)))

    labels = np.array([0, 1, 2, 3])
    optimizers = {"sgd": lambda ps: mc.optim.SGD(ps, lr=0.1, momentum=0.9), "adam": mc.optim.Adam,
                  "adamw": mc.optim.AdamW, "rmsprop": lambda ps: mc.optim.RMSprop(ps, momentum=0.9, centered=True)}
    if op in optimizers:
        p = mc.Parameter(backend.array(rng.standard_normal(5).astype(np.float32)))
        p.grad = backend.array(np.ones(5, np.float32))
        return optimizers[op]([p]).step()
    runs = {
        "conv2d": lambda: forward_backward(F.conv2d(tensor(2, 4, 5, 5), tensor(6, 2, 3, 3), tensor(6), padding=1,
                                                    groups=2)),
        "linear": lambda: forward_backward(F.linear(tensor(3, 4), tensor(5, 4), tensor(5))),
        "max_pool2d": lambda: forward_backward(F.max_pool2d(tensor(2, 3, 6, 6), 3, 2)),
        "avg_pool2d": lambda: forward_backward(F.avg_pool2d(tensor(2, 3, 6, 6), 3, 2)),
        "local_response_norm": lambda: forward_backward(F.local_response_norm(tensor(2, 6, 3, 3))),
        "relu": lambda: forward_backward(F.relu(tensor(2, 3))),
        "dropout": lambda: forward_backward(F.dropout(tensor(2, 3), 0.5)),
        "cross_entropy": lambda: F.cross_entropy(tensor(4, 5), backend.array(labels)).backward(),
    }
    runs[op]()


@pytest.mark.parametrize("op", sorted(explain_module.OPS))
def test_the_kernels_explain_lists_are_those_the_op_launches(op, kernel_backend):
    """explain's kernels of each op are what mc.trace sees it launch (GEMMs aside), on every kernel backend."""
    with mc.trace() as trace:
        _run_once(op, kernel_backend)
    launched = [r["kernel"] for r in trace.records if r["kind"] == "launch" and r["kernel"] != "gemm"]
    assert launched, f"{op} launched no kernel on {kernel_backend.name}"
    in_order = list(dict.fromkeys(launched))        # each kernel once, where it first ran
    assert explain_module.OPS[op][4] == in_order, f"explain.py's kernels of {op}: {in_order}"


def test_aliases_and_unknown_names():
    assert mc.explain("lrn", file=io.StringIO()).startswith("local_response_norm")
    with pytest.raises(ValueError, match="no op named 'conv3d'"):
        mc.explain("conv3d")


# --------------------------------------------------------------------------- docs/ops: one page per op
PAGES = ROOT / "docs" / "ops"
LINK = re.compile(r"\[([\w.]+)\]\(\.\./\.\./([\w/.]+)#L(\d+)\)")


def test_every_op_has_its_page():
    for op, entry in explain_module.OPS.items():
        assert (PAGES / entry[-1]).is_file(), f"docs/ops/{entry[-1]} is missing ({op})"


def test_every_line_anchor_points_at_the_definition_it_names():
    wrong = []
    for page in sorted(PAGES.glob("*.md")):
        for name, path, line in LINK.findall(page.read_text()):
            actual = explain_module.definition_line(ROOT / path, name.split(".")[-1])
            if actual != int(line):
                wrong.append(f"{page.name}: [{name}]({path}#L{line}) should be #L{actual}")
    assert not wrong, "run python scripts/update_op_anchors.py:\n" + "\n".join(wrong)


def test_every_page_links_its_three_definitions_and_its_example_runs():
    for page in sorted(PAGES.glob("*.md")):
        if page.name == "README.md":
            continue
        text = page.read_text()
        paths = {path for _, path, _ in LINK.findall(text)}
        assert "minicnn/naive.py" in paths and "minicnn/backends/reference.py" in paths, page.name
        assert any(p.startswith("csrc/") for p in paths), page.name
        examples = re.findall(r"```python\n(.*?)```", text, re.S)
        assert len(examples) == 1, page.name
        previous = mc.get_cpu_backend()
        try:
            exec(compile(examples[0], str(page), "exec"), {"print": lambda *a, **k: None})
        finally:
            mc.set_cpu_backend(previous)
