"""Command-line interface (placeholder until the agents land; see issue 3)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("bongrl: the train command is not built yet", file=sys.stderr)
    return 1
