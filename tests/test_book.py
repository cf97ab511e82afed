"""The executable book (book/): structure checks (fast) and a full build (slow).

The fast tests check what makes the build strict and reproducible: every toc entry exists and every
chapter is in the toc, chapters are MyST markdown notebooks on the python3 kernel with no stored
outputs, and the configuration fails on any cell error. The slow test builds a copy of the book
with the same command as ``nox -s book``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD_FLAGS = ("--all", "-W", "-n", "--keep-going")
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def _yaml(name: str) -> dict:
    return yaml.safe_load((BOOK / name).read_text())


def _toc_files() -> list[str]:
    toc = _yaml("_toc.yml")
    files = [toc["root"]]
    for entry in toc.get("chapters", []) + [c for p in toc.get("parts", []) for c in p.get("chapters", [])]:
        files.append(entry["file"])
    return files


def _chapters() -> list[Path]:
    return [BOOK / f"{name}.md" for name in _toc_files()]


def test_every_toc_entry_exists_and_every_chapter_is_in_the_toc():
    listed = _toc_files()
    assert len(listed) == len(set(listed)), "a chapter is listed twice"
    for name in listed:
        assert (BOOK / f"{name}.md").is_file(), f"toc entry {name!r} has no book/{name}.md"
    on_disk = {p.stem for p in BOOK.glob("*.md")}
    assert on_disk == set(listed), f"chapters not in the toc: {sorted(on_disk - set(listed))}"
    assert not list(BOOK.glob("*.ipynb")), "chapters are stored as MyST markdown, not .ipynb"


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.stem)
def test_chapter_is_a_myst_notebook_without_outputs(chapter: Path):
    text = chapter.read_text()
    match = FRONT_MATTER.match(text)
    assert match, f"{chapter.name}: no YAML front matter"
    meta = yaml.safe_load(match.group(1))
    assert meta["jupytext"]["text_representation"]["format_name"] == "myst"
    assert meta["kernelspec"]["name"] == "python3" and meta["kernelspec"]["language"] == "python"
    cells = CODE_CELL.findall(text)
    assert cells, f"{chapter.name}: no code cell: every chapter executes real code"
    assert "outputs" not in meta and "execution_count" not in text, f"{chapter.name}: stored outputs"
    for cell in cells:
        assert 'matplotlib.use("Agg")' not in cell and "matplotlib.use('Agg')" not in cell, (
            f"{chapter.name}: matplotlib.use('Agg') suppresses the inline figures"
        )
        compile("\n".join(line for line in cell.splitlines() if not line.startswith(":")), chapter.name, "exec")


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.stem)
def test_no_python_cross_reference_roles(chapter: Path):
    """The book has no API pages (no autodoc), so a ``{class}``/``{mod}``/``{func}``/``{meth}`` role has no target and
    fails the nitpicky build: module and class names are written as code instead (checked here in milliseconds)."""
    roles = re.findall(r"\{py:\w+\}`[^`]*`|\{(?:class|mod|func|meth|attr|obj)\}`[^`]*`", chapter.read_text())
    assert not roles, f"{chapter.name}: cross-reference roles without a target: {roles}"


def test_config_fails_the_build_on_any_error_and_needs_no_network():
    cfg = _yaml("_config.yml")
    assert cfg["only_build_toc_files"] is True
    execute = cfg["execute"]
    assert execute["execute_notebooks"] == "force"
    assert execute["allow_errors"] is False
    assert isinstance(execute["timeout"], int) and execute["timeout"] > 0
    sphinx = cfg["sphinx"]["config"]
    assert sphinx["nb_execution_raise_on_error"] is True
    assert sphinx["intersphinx_mapping"] == {}, "intersphinx inventories would be downloaded"
    assert not cfg.get("launch_buttons", {}).get("thebe", False)


def test_nox_book_session_uses_the_strict_build_flags():
    nox_src = (ROOT / "noxfile.py").read_text()
    session = nox_src[nox_src.index("def book(") :].split("@nox.session")[0]
    assert '"jupyter-book", "build", "book"' in session
    for flag in BUILD_FLAGS:
        assert f'"{flag}"' in session, f"nox -s book misses {flag}"


def _need_jupyter_book() -> None:
    """Skip without jupyter-book, except in CI (``CI`` set), where the build must run: fail there."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        missing = "jupyter-book is not installed (the book extra: pip install -e '.[book]')"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}, and CI must build the book")
        pytest.skip(missing)


@pytest.mark.slow
def test_book_builds_without_errors_or_warnings(tmp_path: Path):
    """Execute every chapter and build the HTML (a few minutes on 2 CPU cores)."""
    _need_jupyter_book()
    exe = Path(sys.executable).parent / "jupyter-book"
    assert exe.exists(), f"no jupyter-book next to {sys.executable}"
    book = tmp_path / "book"
    shutil.copytree(BOOK, book, ignore=shutil.ignore_patterns("_build", "__pycache__", ".ipynb_checkpoints"))
    out = subprocess.run([str(exe), "build", str(book), *BUILD_FLAGS], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "build succeeded" in log, log[-3000:]  # -W: any Sphinx warning would have failed the build
    html = book / "_build" / "html"
    for name in _toc_files():
        page = html / f"{name}.html"
        assert page.is_file(), f"{name}.html was not built"
        assert "Traceback" not in page.read_text(), f"{name}.html shows a traceback"
    figures = list((html / "_images").glob("*.png"))
    assert len(figures) >= 10, f"only {len(figures)} figures rendered"
