"""Errors of the ``mfsg`` commands, below :mod:`mfsg.cli` and every command module.

A bad option, input file or output folder ends a command with one line on stderr that names the
option or the file and says what is wrong, and exit status :data:`EXIT_BAD_INPUT`, never a
traceback. Commands raise :class:`~mfsg.config.UsageError` (a bad option or folder) or let a
:class:`~mfsg.config.ConfigError` through (a bad value or file, raised where it is read);
:func:`mfsg.cli.main` prints it with :func:`one_line`.
"""

from __future__ import annotations

from mfsg.config import ConfigError, UsageError

__all__ = ["ConfigError", "UsageError", "EXIT_BAD_INPUT", "one_line"]

EXIT_BAD_INPUT = 2  # argparse's status for a bad command line, used for every bad input


def one_line(message: object) -> str:
    """``message`` on one line: its lines joined by "; " (a library's message may span several)."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
