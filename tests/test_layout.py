"""The layout README's "What is where" promises: the application (the CLI, the training loop)
stays out of what does not need it, and the kernel sources' facts are written once."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minicnn"


def imports_of(path):
    """The modules a file of minicnn/ imports, as absolute dotted names; ``from . import x``
    counts both the package and ``package.x`` (x may be a module)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def test_checkpoints_save_a_history_without_importing_the_training_loop():
    for name in ("checkpoint.py", "history.py"):
        assert "minicnn.training" not in imports_of(PACKAGE / name), name


def test_only_python_dash_m_minicnn_imports_the_command_line():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        cli = [name for name in imports_of(path) if name == "minicnn.cli" or name.startswith("minicnn.cli.")]
        assert not cli, f"{path.relative_to(ROOT)} imports {cli}"


def test_the_kernel_sources_facts_are_read_from_sources_py():
    """setup.py loads backends/sources.py by its path before minicnn is built: it may import only the
    standard library. The builds that compile csrc/ take their flags from it rather than repeat them."""
    stdlib = getattr(sys, "stdlib_module_names", {"re", "pathlib"})
    for name in imports_of(PACKAGE / "backends" / "sources.py"):
        assert name.split(".")[0] in stdlib, f"backends/sources.py imports {name}"
    for path in (ROOT / "setup.py", ROOT / "dev" / "common.py", PACKAGE / "backends" / "cuda.py"):
        text = path.read_text()
        for fact in ("-ffp-contract", "MC_CUDA_MATH_FLAGS", "MC_FOR_EACH_KERNEL", "c++17"):
            assert fact not in text, f"{path.relative_to(ROOT)} writes {fact!r} again (backends/sources.py has it)"
