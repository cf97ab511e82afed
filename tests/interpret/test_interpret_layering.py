"""mfsg.interpret sits after mfsg.learn in the data flow: it imports only the layers below it, and
nothing but the command line imports it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mfsg"
BELOW = ("mfsg.config", "mfsg.seeds", "mfsg.env", "mfsg.protocols", "mfsg.language", "mfsg.learn", "mfsg.metrics",
         "mfsg.interpret")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n == "mfsg" or n.startswith("mfsg.")}


def test_interpret_imports_only_layers_below():
    for path in (PACKAGE / "interpret").glob("*.py"):
        upward = {n for n in _imports(path) if not n.startswith(BELOW)}
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_only_the_command_line_imports_interpret():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("interpret", "commands"):
            continue
        assert not any(n.startswith("mfsg.interpret") for n in _imports(path)), f"{rel} imports mfsg.interpret"
