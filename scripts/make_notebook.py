"""Make a Jupyter notebook from a script with "# %%" cell markers, so the two cannot drift.

    python scripts/make_notebook.py examples/backprop_tour.py     # writes examples/backprop_tour.ipynb

The script is the source: edit it, then run this. "# %%" starts a code cell and
"# %% [markdown]" a text cell, whose lines are comments ("# " is taken off), as in
Jupytext's percent format. The notebook is written without outputs; tests/test_examples.py
checks that it holds the script's cells and runs both.
"""

import argparse
import re
from pathlib import Path

MARKER = re.compile(r"^# %%( \[markdown\])?\s*$")


def cells_of(script_text):
    """[(kind, source)] of a script: kind "code" or "markdown", in order."""
    cells, kind, lines = [], None, []

    def close():
        if kind is not None:
            source = "\n".join(lines).strip("\n")
            cells.append((kind, source))

    for line in script_text.splitlines():
        match = MARKER.match(line)
        if match:
            close()
            kind, lines = ("markdown" if match.group(1) else "code"), []
        elif kind == "markdown":
            lines.append(re.sub(r"^# ?", "", line))
        elif kind == "code":
            lines.append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' marker: {line!r}")
    close()
    return cells


def notebook_of(script_text):
    """The nbformat notebook (version 4, no outputs) of a script's cells."""
    import nbformat
    new = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [new[kind](source) for kind, source in cells_of(script_text)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", type=Path, help="a .py file with '# %%' cell markers")
    args = parser.parse_args(argv)
    import nbformat
    notebook = notebook_of(args.script.read_text())
    for i, cell in enumerate(notebook.cells):       # stable ids: regenerating an unchanged script changes nothing
        cell["id"] = f"cell-{i}"
    path = args.script.with_suffix(".ipynb")
    nbformat.write(notebook, str(path))
    print(f"wrote {path}: {len(notebook.cells)} cells")


if __name__ == "__main__":
    main()
