"""The API's per-minute limits, kept by every thread of a process: requests, input tokens and output tokens.

The API limits each of the three on its own, so each has its own token bucket, holding one second's
worth so calls are spread evenly rather than sent in a burst the API would count against a shorter
window. Tokens are reserved before a call from estimates and settled after it from the API's usage
(a reply's size is only known then), so a bucket can go below zero and later calls wait until it
refills. A 429 pauses every caller for its `retry-after`.

Runs on several machines each keep their own limiter: each run is given its share of the API's limits
(`bulkgen run --submit` divides them by the runs the queue lets run at once), so no state is shared.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Requests, input tokens and output tokens per minute (None or 0: that one is not limited)."""

    def __init__(self, requests_per_minute: int | None, input_tokens_per_minute: int | None,
                 output_tokens_per_minute: int | None):
        self._lock = threading.Lock()
        self._requests = _Bucket(requests_per_minute)
        self._input = _Bucket(input_tokens_per_minute)
        self._output = _Bucket(output_tokens_per_minute)
        self._paused_until = 0.0

    def acquire(self, input_tokens: int, output_tokens: int) -> float:
        """Wait until a call of about these sizes may go; returns the seconds waited."""
        started = time.monotonic()
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(self._paused_until - now, self._requests.wait(now, 1),
                           self._input.wait(now, input_tokens), self._output.wait(now, output_tokens))
                if wait <= 0:
                    self._requests.take(1)
                    self._input.take(input_tokens)
                    self._output.take(output_tokens)
                    return now - started
            time.sleep(wait)

    def settle(self, reserved: tuple[int, int], used: tuple[int, int]) -> None:
        """Correct a call's reservation (input, output) to the tokens the API counted ((0, 0) for a failed call)."""
        with self._lock:
            self._input.take(used[0] - reserved[0])
            self._output.take(used[1] - reserved[1])

    def pause(self, seconds: float) -> None:
        """No caller starts a call for `seconds` (a 429's retry-after)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())


class _Bucket:
    """Refilled at `per_minute / 60` a second up to one second's worth; no rate means no limit."""

    def __init__(self, per_minute: int | None):
        self.rate = per_minute / 60 if per_minute else None
        self.capacity = max(1.0, self.rate) if self.rate else 0.0
        self.level = self.capacity
        self.stamp = time.monotonic()

    def wait(self, now: float, amount: float) -> float:
        """Seconds until `amount` may be taken (at most a full bucket is ever waited for)."""
        if self.rate is None:
            return 0.0
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float) -> None:
        if self.rate is not None:
            self.level = min(self.capacity, self.level - amount)


_LIMITERS: dict[tuple, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(base_url: str, model: str, requests_per_minute: int | None, input_tokens_per_minute: int | None,
                   output_tokens_per_minute: int | None) -> RateLimiter:
    """The process's limiter for one API and model: every generator and thread calling them shares it."""
    key = (base_url, model, requests_per_minute, input_tokens_per_minute, output_tokens_per_minute)
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, RateLimiter(*key[2:]))


def share_of(limit: int | None, runs: int) -> int | None:
    """One run's part of a limit that `runs` runs at once divide between them (None: no limit)."""
    return max(1, limit // runs) if limit else None
