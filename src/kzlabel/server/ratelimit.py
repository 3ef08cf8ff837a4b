"""Per-client rate limits: one token bucket per client key, refilled continuously.

A bucket holds at most ``burst`` requests and gains ``rate`` a second; a request takes one, and a client whose bucket
is empty is told how long until it has one again (the ``Retry-After`` of a 429). Only the event loop touches the
buckets, so there is no lock. The number of clients remembered is capped: past the cap the least recently seen client
is forgotten, which gives it a full bucket again (a client would need that many addresses to gain from it).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_CLIENTS", "RateLimiter"]

MAX_CLIENTS = 10_000  # buckets remembered (~200 bytes each)


class RateLimiter:
    """Token buckets keyed by client; :meth:`take` admits a request or says how long to wait."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("a rate limit needs rate > 0, burst >= 1 and max_clients >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when counted)

    def take(self, key: str) -> int | None:
        """Take one request from ``key``'s bucket: None when admitted, else whole seconds until one is back."""
        now = self.clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        admitted = tokens >= 1.0
        if admitted:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # re-inserted last: the most recently seen
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if admitted:
            return None
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def __len__(self) -> int:
        return len(self._buckets)
