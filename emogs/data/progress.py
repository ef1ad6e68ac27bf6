"""Progress lines on stderr for long stages (throttled; carriage-return updates on a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    """`p = Progress("track", total)`; `p(done)` as work advances; `p.close()` prints the final line."""

    def __init__(self, name: str, total: int | None, unit: str = "frames", every_s: float = 1.0) -> None:
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.t0 = self._last = time.perf_counter()
        self.done = 0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(end="\r" if self.tty else "\n")

    def _print(self, end: str) -> None:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"prepare: {self.name} {self.done}{of} {self.unit} ({self.done / dt:.0f}/s){end}")
        sys.stderr.flush()

    def close(self) -> None:
        self._print(end="\n")
