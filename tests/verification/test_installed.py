"""``verification`` is an installable package: a wheel of the project carries it, and ``mfsg verify`` imports
it from the installed location, outside the repository (no ``sys.path`` insertion)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_verification_outside_the_repository(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("mfsg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "verification/suite.py" in names and "verification/__init__.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path)
    code = ("import verification.suite as s, mfsg.commands.verify as v; print(s.__file__); "
            "print(v._suite().__file__); print(sorted(s.CASES)[0])")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": ""}).stdout.split()
    assert all(Path(p).resolve().is_relative_to(target.resolve()) for p in out[:2]), out
    assert not any(Path(p).resolve().is_relative_to(REPO) for p in out[:2])
