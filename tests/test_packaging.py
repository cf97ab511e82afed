"""Packaging invariants: environment.yml mirrors pyproject.toml; torch is pinned everywhere."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.update(extra)
    return {_norm(r) for r in reqs}


def _environment_pip() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_norm(r) for r in pip if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert _environment_pip() == _pyproject_requirements()


def test_environment_yml_python_matches_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=" + python.split("=")[1]


def test_torch_is_pinned_everywhere():
    texts = {p: (ROOT / p).read_text() for p in ("pyproject.toml", "environment.yml", "noxfile.py")}
    # a requirement is a quoted string or a YAML list item that starts with "torch"
    requirement = re.compile(r"""(?:["']|^\s*-\s*)(torch(?![a-z_-])[^"'\n]*)""", re.MULTILINE)
    for path, text in texts.items():
        found = requirement.findall(text)
        assert found, f"{path} names no torch requirement"
        for req in found:
            assert req.replace(" ", "") == "torch==2.13.0", f"{path}: {req!r}"
