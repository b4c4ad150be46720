"""Exceptions shared by the command line and the run layer, and the one-line message helper.

They live here, below every other module, so that the CLI, the run layer, ``tune`` and ``compare`` can all
raise them without importing each other (docs/design.md §1).
"""

from __future__ import annotations

__all__ = ["UsageError", "RunFailure", "one_line"]


class UsageError(Exception):
    """Bad user input (a flag, a setting, a path): the CLI exits 2 with one ``bongrl: error: ...`` line."""


class RunFailure(Exception):
    """Training or evaluation failed at run time: the CLI exits 1 with one line."""


def one_line(exc: BaseException | str) -> str:
    """``exc``'s message on one line (whitespace collapsed); the exception's type name if it has none."""
    text = str(exc) if str(exc) else type(exc).__name__
    return " ".join(text.split())
