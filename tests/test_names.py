"""One name per concept: no two public classes of the package share a name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import mfsg


def public_classes() -> dict[str, list[str]]:
    """Public class name -> the modules defining a class of that name (every mfsg module imported
    but ``__main__``)."""
    where: dict[str, list[str]] = defaultdict(list)
    for info in pkgutil.walk_packages(mfsg.__path__, prefix="mfsg."):
        if info.name.endswith(".__main__"):  # running it is the command line
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == info.name and not name.startswith("_"):
                where[name].append(info.name)
    return where


def test_no_two_public_classes_share_a_name():
    where = public_classes()
    assert len(where) > 50  # the walk found the package's classes
    shared = {name: mods for name, mods in where.items() if len(mods) > 1}
    assert not shared, f"public class names defined more than once: {shared}"
