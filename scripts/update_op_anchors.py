#!/usr/bin/env python3
"""Point every line anchor of docs/ops/*.md at the definition its link names, as the code is now.

A link [naive.conv2d](../../minicnn/naive.py#L38) names a def (or, in csrc/, an MC_KERNEL);
editing the code moves it, and tests/test_explain.py fails until this script is run:

    python scripts/update_op_anchors.py
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from minicnn.explain import definition_line  # noqa: E402

LINK = re.compile(r"\[([\w.]+)\]\(\.\./\.\./([\w/.]+)#L(\d+)\)")


def fixed(match):
    name, path, line = match.groups()
    actual = definition_line(ROOT / path, name.split(".")[-1])
    if actual is None:
        raise SystemExit(f"{path} defines no {name}: fix the link by hand")
    return f"[{name}](../../{path}#L{actual})"


for page in sorted((ROOT / "docs" / "ops").glob("*.md")):
    text = page.read_text()
    new = LINK.sub(fixed, text)
    if new != text:
        page.write_text(new)
        print(f"updated {page.relative_to(ROOT)}")
