"""A run's spending limit (`max_cost_usd`): nothing starts that could take the run past it.

Before a request or a batch starts, its estimated cost is reserved: it starts only if what the run
was already billed, plus the estimates of what is in flight, plus its own estimate stays within the
limit. When it returns, its reservation is replaced by what it was billed. The first refusal closes
the budget: no later item starts, however small, so the items left are the job's last ones in order
and stay `queued` for a later run (they are not failures).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from resources.generators import Usage


class Budget:
    """At most `max_cost_usd` US dollars for one run (None: no limit), priced by `price`."""

    def __init__(self, max_cost_usd: float | None, price: Callable[[Usage], float]):
        self.max_cost_usd = max_cost_usd
        self._price = price
        self._lock = threading.Lock()
        self.billed_usd = 0.0
        self.in_flight_usd = 0.0
        self.reached = False

    def reserve(self, estimate: Usage | None) -> float | None:
        """The dollars reserved for work estimated at `estimate` (None: not metered, nothing to reserve), or
        None when it would take the run past its limit (the budget is then closed)."""
        cost = self._price(estimate) if estimate is not None else 0.0
        with self._lock:
            if self.max_cost_usd is not None and (
                    self.reached or self.billed_usd + self.in_flight_usd + cost > self.max_cost_usd):
                self.reached = True
                return None
            self.in_flight_usd += cost
            return cost

    def hold(self, reserved: float) -> None:
        """Count as in flight what an earlier run started and this one waits for (a re-attached batch)."""
        with self._lock:
            self.in_flight_usd += reserved

    def settle(self, reserved: float, billed: Usage | None) -> None:
        """Work that reserved `reserved` has returned, billed `billed` (None: nothing)."""
        cost = self._price(billed) if billed is not None else 0.0
        with self._lock:
            self.in_flight_usd -= reserved
            self.billed_usd += cost

    def describe(self) -> str:
        return (f"budget of ${self.max_cost_usd:.4f} reached: ${self.billed_usd:.4f} billed, "
                f"${self.in_flight_usd:.4f} in flight")
