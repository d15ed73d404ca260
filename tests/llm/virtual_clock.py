"""A clock the tests advance instead of waiting: what the code under test waited is asserted exactly,
never measured, so a busy machine cannot make a test fail (speed is the bench's business)."""

from __future__ import annotations

import threading
import time


class VirtualClock:
    """Stands in for the `time` module of the code under test: `sleep` records the wait and moves the clock on."""

    def __init__(self):
        self._lock = threading.Lock()
        self.start = self._now = time.monotonic()  # after any real stamp a process-wide limiter may hold
        self._epoch = time.time() - self._now
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._epoch + self._now

    def time_ns(self) -> int:
        return int(self.time() * 1e9)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)
