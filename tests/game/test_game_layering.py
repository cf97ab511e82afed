"""mfsg.game sits below mfsg.verify in the data flow: no module of the game layer imports the checks."""

import ast
from pathlib import Path

import mfsg.game

GAME = Path(mfsg.game.__file__).parent


def test_no_game_module_imports_verify():
    offenders = []
    for path in sorted(GAME.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "mfsg.verify" or n.startswith("mfsg.verify.")]
    assert not offenders, offenders
