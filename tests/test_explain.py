"""mc.explain: each op's formula and the file:line of its three definitions, which must be right."""

import importlib
import io
import re
from pathlib import Path

import pytest

import minicnn as mc

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


def test_aliases_and_unknown_names():
    assert mc.explain("lrn", file=io.StringIO()).startswith("local_response_norm")
    with pytest.raises(ValueError, match="no op named 'conv3d'"):
        mc.explain("conv3d")
