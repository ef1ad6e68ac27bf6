"""Progress lines on stderr for long stages (throttled; carriage-return updates on a terminal).

Stages may run at the same time (the masks stage beside the frames stage): on a terminal the running
counters share one line ("prepare: frames 300/1259 (95/s) | masks 120/1259 (40/s)"); otherwise each
prints its own lines."""
from __future__ import annotations

import sys
import threading
import time

_lock = threading.Lock()
_active: list["Progress"] = []


class Progress:
    """`p = Progress("track", total)`; `p(done)` as work advances; `p.close()` prints the final line."""

    def __init__(self, name: str, total: int | None, unit: str = "frames", every_s: float = 1.0) -> None:
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.t0 = self._last = self._seen = time.perf_counter()
        self.done = 0
        self.tty = sys.stderr.isatty()
        with _lock:
            _active.append(self)

    def __call__(self, done: int) -> None:
        self.done = done
        now = self._seen = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(end="\r" if self.tty else "\n")

    def _text(self) -> str:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        of = f"/{self.total}" if self.total and self.total >= self.done else ""  # totals may be estimates
        return f"{self.name} {self.done}{of} {self.unit} ({self.done / dt:.0f}/s)"

    def _print(self, end: str) -> None:
        with _lock:
            now = time.perf_counter()  # (a stage that failed never closes its counter: drop stale ones)
            _active[:] = live = [p for p in _active if p is self or now - p._seen < 5 * p.every_s]
            line = " | ".join(p._text() for p in live) if self.tty and end == "\r" else self._text()
            pad = "\033[K" if self.tty else ""  # a shorter line must not leave the end of a longer one
            sys.stderr.write(f"prepare: {line}{pad}{end}")
            sys.stderr.flush()

    def close(self) -> None:
        self._print(end="\n")
        with _lock:
            if self in _active:
                _active.remove(self)
