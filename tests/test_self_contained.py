"""The project is self-contained: no file points outside the repository, and every "model §n"
citation names a section of the book chapter "The model" (book/model.md).

Plain text scans of the repository's own files; no package import, so they run in well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "book" / "model.md"
THIS = Path(__file__).resolve()

# Where to look, as (folder or file, suffixes); generated and ignored folders are skipped.
SCANNED = (
    ("mfsg", (".py", ".md", ".toml", ".json")),
    ("verification", (".py", ".md", ".toml")),
    ("tests", (".py", ".md", ".toml")),
    ("book", (".md", ".yml", ".py")),
    ("experiments", (".toml", ".md", ".json", ".jsonl")),
    ("README.md", ()),
    ("noxfile.py", ()),
    ("pyproject.toml", ()),
    ("environment.yml", ()),
)
SKIPPED_DIRS = {"_build", "__pycache__", ".ipynb_checkpoints", ".hypothesis", "quick", "runs"}

# References to files outside the repository (a clone does not have them). The words are split so
# that this file's own source does not contain them.
OUTSIDE = re.compile(
    "|".join([
        re.escape("../" + "shared"),
        re.escape("/work/" + "shared"),
        re.escape("SPEC" + ".md"),
        "SPEC" + r"\s*§",
    ])
)
# The papers are cited by title and arXiv number, never by a local text file.
PAPER_FILES = re.compile(r"papers/" + r"\d{3}_")

# "model §2.4", "model §2–§4", "model §5, §6", "model §2/§4", "model §2.4–§2.8"
SECTION = r"§\d+(?:\.\d+)?"
CITATION = re.compile(r"model\s+(" + SECTION + r"(?:\s*(?:,|/|–|-|and)\s*" + SECTION + r")*)")
HEADING = re.compile(r"^#{1,6}\s+(" + SECTION + r")\s", re.MULTILINE)
LABEL = re.compile(r"^\((model[\w-]*)\)=\s*$", re.MULTILINE)
REF = re.compile(r"\{ref\}`(?:[^`<]*<)?(model[\w-]*)>?`")


def _files() -> list[Path]:
    out = []
    for name, suffixes in SCANNED:
        root = REPO / name
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(REPO).parts
                if path.is_file() and path.suffix in suffixes and not SKIPPED_DIRS.intersection(rel):
                    out.append(path)
    return [p for p in out if p.resolve() != THIS]


FILES = _files()
TEXTS = {p: p.read_text(encoding="utf-8", errors="replace") for p in FILES}


def _hits(pattern: re.Pattern) -> list[str]:
    hits = []
    for path, text in TEXTS.items():
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{path.relative_to(REPO)}:{line}: {m.group(0)!r}")
    return hits


def chapter_sections() -> set[str]:
    """Section numbers of book/model.md's headings ("## §1 ...", "### §2.4 ...")."""
    return set(HEADING.findall(CHAPTER.read_text(encoding="utf-8")))


def test_scan_covers_the_project():
    scanned = {p.relative_to(REPO).as_posix() for p in FILES}
    for expected in ("README.md", "book/model.md", "book/intro.md", "mfsg/config.py", "noxfile.py"):
        assert expected in scanned, f"{expected} is not scanned"
    assert any(s.startswith("experiments/configs/") and s.endswith(".toml") for s in scanned)


def test_no_reference_outside_the_repository():
    hits = _hits(OUTSIDE)
    assert not hits, "references to files outside the repository (cite the book chapter 'The model' as " \
                     "'model §n' instead):\n" + "\n".join(hits)


def test_no_local_paper_files():
    hits = _hits(PAPER_FILES)
    assert not hits, "references to local paper text files (cite the paper by title or arXiv number):\n" \
                     + "\n".join(hits)


def test_chapter_has_every_section():
    sections = chapter_sections()
    expected = {f"§{n}" for n in range(1, 9)} | {f"§2.{k}" for k in range(1, 9)}
    assert expected <= sections, f"book/model.md lacks sections {sorted(expected - sections)}"


def test_every_cited_section_exists():
    sections = chapter_sections()
    missing = []
    for path, text in TEXTS.items():
        for m in CITATION.finditer(text):
            for number in re.findall(SECTION, m.group(1)):
                if number not in sections:
                    line = text.count("\n", 0, m.start()) + 1
                    missing.append(f"{path.relative_to(REPO)}:{line}: {m.group(0)!r} ({number} is not a section)")
    assert not missing, "citations of sections that book/model.md does not have:\n" + "\n".join(missing)


def test_citations_are_found():
    """The citation pattern matches the code's citations (guards the check above against a broken regex)."""
    cited = {n for text in TEXTS.values() for m in CITATION.finditer(text) for n in re.findall(SECTION, m.group(1))}
    assert {"§2.4", "§8"} <= cited


@pytest.mark.parametrize("text, numbers", [
    ("see model §2.4-§2.8 and", ["§2.4", "§2.8"]),
    ("(model §5, §6 \"no", ["§5", "§6"]),
    ("model §2/§4 as a game", ["§2", "§4"]),
    ("model §8 Def. 2", ["§8"]),
])
def test_citation_pattern(text, numbers):
    assert [n for m in CITATION.finditer(text) for n in re.findall(SECTION, m.group(1))] == numbers


def test_book_links_to_the_chapter_resolve():
    labels = set(LABEL.findall(CHAPTER.read_text(encoding="utf-8")))
    broken = [f"{p.relative_to(REPO)}: {{ref}} to {target}" for p, text in TEXTS.items() if p.suffix == ".md"
              for target in REF.findall(text) if target not in labels]
    assert not broken, "links to labels that book/model.md does not define:\n" + "\n".join(broken)


def test_chapter_is_in_the_table_of_contents_after_the_intro():
    toc = (REPO / "book" / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"^\s*(?:root|- file):\s*(\S+)", toc, re.MULTILINE)
    assert files[:2] == ["intro", "model"], f"book/_toc.yml order: {files}"
