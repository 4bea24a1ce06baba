"""A one-line progress report with rate and time left, for work that TensorFlow does not drive.

Keras's ``Progbar`` would do, but importing Keras starts TensorFlow, several seconds that a
footage run served by LiteRT does not otherwise spend. On a terminal the line is rewritten in
place; in a log it is printed every tenth of the work, so a log stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(done)`` as work advances (a count, or an amount such as seconds of video);
    ``total`` may be unknown (None)."""

    def __init__(self, label: str, total: float | None, unit: str, enabled: bool = True,
                 stream: TextIO | None = None, interval: float = 0.5) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self._start = time.perf_counter()
        self._last = 0.0
        self._tty = self.stream.isatty()
        self._next_log_share = 0.1
        self._shown = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def line(self, done: float, extra: str = "") -> str:
        elapsed = time.perf_counter() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0

        def shown(value: float) -> str:
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        count = f"{shown(done)}/{shown(self.total)}" if self.total else shown(done)
        text = f"{self.label}: {count} {self.unit}s, {rate:.1f} {self.unit}s/s{extra}"
        if self.total and rate > 0:
            text += f", time left {format_duration(max(0, self.total - done) / rate)}"
        return text + f", {format_duration(elapsed)} so far"

    def update(self, done: float, extra: str = "") -> None:
        """``extra``: more to say after the rate, e.g. ", 24.0 frames/s"."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last >= self.interval:
                self.stream.write("\r" + self.line(done, extra) + "\033[K")
                self.stream.flush()
                self._last, self._shown = now, True
        elif self.total and done >= self._next_log_share * self.total:
            self.stream.write(self.line(done, extra) + "\n")
            while self._next_log_share * self.total <= done:
                self._next_log_share += 0.1

    def close(self) -> None:
        if self.enabled and self._tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
