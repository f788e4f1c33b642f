"""The stand-in's capacity model: a queue in front of N servers, slower under load, with stalls.

This is a **model**, not CrateDB: it gives tests and benchmarks a server with a knee.  Real
CrateDB nodes have thread pools, queues, shard-level concurrency and GC pauses; this keeps only
the shape of the curve those produce:

* ``capacity`` requests are served at once; the rest wait, first come first served.  Below the
  capacity, throughput grows with concurrency; past it, throughput stays flat and latency grows
  with the queue (Little's law) — the saturation knee sits at ``capacity``.
* the service time grows with the number of requests in service:
  ``latency_ms * (1 + growth * (busy - 1) / capacity)`` — contention makes each request a
  little slower as the server fills up (``growth = 0`` gives a fixed service time).
* every ``stall_every``-th request freezes the whole server for ``stall_ms`` (a pause like a
  stop-the-world GC): no request in service or arriving during the pause is answered before
  it ends.

``CapacityModel`` decides (pure, clock passed in); the server does the waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CapacityModel:
    """Service-time and stall decisions of one stand-in.

    ``capacity`` 0 means unlimited (the service time is then ``latency_ms``, fixed).
    Times are in seconds except the ``*_ms`` settings.
    """

    latency_ms: float = 0.0
    capacity: int = 0
    growth: float = 0.0
    stall_every: int = 0
    stall_ms: float = 0.0
    busy: int = 0
    admitted: int = 0
    stalled_until: float = 0.0
    stalls: int = 0

    def admit(self, now: float) -> None:
        """A request enters service at ``now``: count it and start a stall when one is due."""
        self.busy += 1
        self.admitted += 1
        if self.stall_every > 0 and self.stall_ms > 0 and self.admitted % self.stall_every == 0:
            self.stalled_until = max(self.stalled_until, now + self.stall_ms / 1000.0)
            self.stalls += 1

    def service_s(self) -> float:
        """Seconds the request just admitted takes, given how many are in service now."""
        base = self.latency_ms / 1000.0
        if self.capacity <= 0 or base <= 0:
            return base
        return base * (1.0 + self.growth * max(0, self.busy - 1) / self.capacity)

    def hold_s(self, now: float) -> float:
        """Seconds a request finishing at ``now`` must still wait for a stall to end (0: none)."""
        return max(0.0, self.stalled_until - now)

    def release(self) -> None:
        """A request left service."""
        self.busy -= 1
