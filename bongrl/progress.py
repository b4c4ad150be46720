"""Progress display that suits its stream: a tqdm bar on a terminal, a few plain lines in a log file or pipe.

:func:`progress` returns an object with the tqdm subset the training loops use — ``update(n)``,
``set_postfix(**kw)``, ``close()`` and the context-manager protocol — whatever the stream is. Off a terminal
(``bongrl train > log.txt``, a CI job, ``nohup``) a tqdm bar would write a carriage-return update several times a
second; :class:`LineProgress` instead writes one line such as ``step 5000/50000 (10%) 812 step/s ret=23.1`` each
time another 10 % of the total is done or 30 s have passed since its last line, whichever comes first, and a final
line on ``close()``.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol

__all__ = ["Progress", "LineProgress", "progress", "LINE_FRACTION", "LINE_SECONDS"]

#: a plain line after each further fraction of the total ...
LINE_FRACTION = 0.1
#: ... or after this many seconds, whichever comes first
LINE_SECONDS = 30.0


class Progress(Protocol):
    """What the training loops call on a progress display (tqdm's names)."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> Progress: ...

    def __exit__(self, *exc: Any) -> Any: ...


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LineProgress:
    """Progress as whole lines on ``file`` (default stderr): at most one per ``LINE_FRACTION`` of ``total`` or per
    ``LINE_SECONDS``, whichever comes first, plus a final line on :meth:`close`. ``enabled=False`` writes
    nothing."""

    def __init__(self, total: int, unit: str = "step", file: IO[str] | None = None, enabled: bool = True,
                 clock: Any = time.monotonic) -> None:
        self.total = max(0, int(total))
        self.unit = unit
        self.file = file
        self.enabled = enabled
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self._clock = clock
        self._t0 = clock()
        self._last_time = self._t0
        self._step = max(1, int(self.total * LINE_FRACTION)) if self.total else 0
        self._next_n = self._step
        self._printed_n: int | None = None
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; write a line when another tenth is done or 30 s have passed."""
        self.n += int(n)
        if not self.enabled:
            return
        now = self._clock()
        by_count = self._step > 0 and self.n >= self._next_n
        if by_count or now - self._last_time >= LINE_SECONDS:
            self._write(now)

    def set_postfix(self, **kwargs: Any) -> None:
        """Values shown after the rate (``ret=23.1``), replacing the previous ones."""
        self.postfix = dict(kwargs)

    def line(self, now: float | None = None) -> str:
        """The current progress as one line (without a newline)."""
        now = self._clock() if now is None else now
        head = f"{self.unit} {self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total \
            else f"{self.unit} {self.n}"
        elapsed = now - self._t0
        rate = f" {self.n / elapsed:.0f} {self.unit}/s" if elapsed > 0 else ""
        extra = "".join(f" {k}={_fmt(v)}" for k, v in self.postfix.items())
        return head + rate + extra

    def _write(self, now: float) -> None:
        print(self.line(now), file=self.file if self.file is not None else sys.stderr, flush=True)
        self._printed_n = self.n
        self._last_time = now
        if self._step:
            self._next_n = (self.n // self._step + 1) * self._step

    def close(self) -> None:
        """Write the final line (unless the last line already showed this count); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and self._printed_n != self.n:
            self._write(self._clock())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(total: int, unit: str = "step", enabled: bool = True, file: IO[str] | None = None) -> Progress:
    """A progress display for ``total`` units on ``file`` (default stderr): a tqdm bar when the stream is a
    terminal, else a :class:`LineProgress`; ``enabled=False`` shows nothing. Same interface either way."""
    stream = file if file is not None else sys.stderr
    if enabled and _is_tty(stream):
        from tqdm.auto import tqdm

        return tqdm(total=int(total), unit=unit, dynamic_ncols=True, file=stream)
    return LineProgress(total, unit, file=stream, enabled=enabled)
