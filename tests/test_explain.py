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
