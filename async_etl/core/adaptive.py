"""Adaptive concurrency: a throughput-probing limit controller, as pure arithmetic.

Theory of operation
-------------------
The aim is the **knee**: the lowest limit (requests in flight) that gets within ``EPSILON``
(5 %) of the most throughput the server gives.  Below it, more concurrency buys throughput;
past it, it only buys queueing.  Latency alone cannot find it when the client itself is busy:
requests then wait in the client's event loop and their latency rises although more of them
still pay off (the earlier Vegas rule backed off to a fifth of the knee that way).  So the
controller climbs on **throughput**, the way the .NET thread pool's hill climbing does
(Hellerstein, Morrison, Eilebrecht, "Optimizing concurrency levels in the .NET ThreadPool",
FeBID 2008), estimated per window from latency by Little's law as in TCP Vegas (Brakmo &
Peterson, IEEE JSAC 1995) and Netflix ``concurrency-limits`` (``VegasLimit``,
``Gradient2Limit``): ``throughput = mean requests in flight / mean latency``, measured only
while the limit was reached at least once (else the source, not the server, set the pace).
That estimate stays smooth when a window holds only a few waves of completions, where counting
them would not.
Errors (failed attempts, 429 / 503 included) cut the limit multiplicatively as in TCP Reno
(RFC 5681), after which growth is additive (AIMD).

1. **Search.**  Double the limit from ``initial`` while each doubling adds more than
   ``GROWTH`` (15 %) throughput over the best level before it.  One flat doubling does not end
   the climb unless the doubling before it added ``SHARP`` (50 %) or more (a straight line up
   to a knee): it may be one noisy window, or a plateau before the next rise (PostgreSQL
   here: about as fast at 2 in flight as at 1, 24 % faster at 4); ``LOOKAHEAD`` (2) flat
   doublings in a row do.  Every level is judged on the mean of its windows, and a
   window that does not show a clear gain gets a second one (``CONFIRM``) before it decides
   anything: windows of a fraction of a second swing by 10-30 % on a busy machine.  Then,
   with ``T`` = 95 % of the best throughput measured, ``b`` the lowest level at or above
   ``T`` (measured again first when it was passed on one window) and ``a`` the highest
   level below it (halving from ``b`` until one is found, when the search began past the knee):
   try ``a * best / X(a)`` once, the level at which the line from the origin through ``a``
   meets the best throughput (exact for a server that is linear up to its knee: no queue below
   ``C*``), and settle there if it gets within ``2 * EPSILON`` of the best (a busy client keeps
   gaining a little past the server's knee; chasing that would settle far above it).  Else
   narrow ``[a, b]`` with each measure (a level that reaches ``T`` is the new
   ``b``, one below it the new ``a``), guessing on the line from ``a`` but at least a quarter
   of the bracket away from either end (the line undershoots a concave curve, and one noisy
   measure of ``a`` must not decide), until ``b - a <= max(1, b / 16)``; settle on ``b``.
2. **Hold and probe.**  At the settled level, every ``hold`` windows try one step up
   (``+10 %``, ``+5 %`` after errors), judged on the mean of ``CONFIRM`` windows: keep it
   when throughput rose, over the mean of the windows held since the last probe, by at least
   ``E_UP`` (60 %) of the proportional gain, and keep climbing; otherwise come back and next
   time try one step down: keep it when throughput stays at or above ``T``.  Each round of
   probes (one up, one down) that changed nothing doubles the hold, up to ``MAX_HOLD`` times
   ``hold``: at a stable knee, probes only cost.  So the limit follows a server that got
   faster or slower without leaving the knee for long.
3. **Drift.**  When the median throughput of the last ``DRIFT_WINDOWS`` (5) windows at the
   held level falls below ``1 - DRIFT`` (70 %) of the reference (the server lost capacity),
   search again, climbing from half the held level (a noisy window must not walk the limit
   down for good).  A median, not a moving average: a server stall of one or two windows
   (PostgreSQL: a window at a third of the rate) dragged the average down and restarted the
   search mid-run; the median moves only when most recent windows are slow.
   Windows whose time-average in flight stayed under 90 % of the limit do not count: then
   the client or the source slowed down (a busy machine), and no limit would help.
4. **Errors.**  Any failed attempt in a window multiplies the limit by ``backoff``; growth
   after that is in ``+5 %`` steps (the sawtooth stays within one step of where errors begin).
5. The limit always stays within ``[minimum, maximum]``.

Against a server with ``C*`` requests served at once and a queue behind them (latency flat up
to ``C*``, then growing in proportion to the queue; service time growing by up to 12 % from
idle to full; up to 3 % latency noise), the limit settles within ±20 % of ``C*`` in at most
``CONVERGENCE_STEPS`` windows from any start at or below half the knee, for ``C* >= 4``, and
stays there, probes included (``tests/core/test_adaptive.py``, hypothesis over server shapes).
A start above the knee halves down to it.

The controller keeps no clock and does no I/O: the runner measures, the controller decides.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

CONVERGENCE_STEPS = 14
"""Windows within which the limit settles near the knee of a queueing server (see above)."""

GROWTH = 0.15
"""A doubling that adds no more than this share of throughput ends the search's climb (a
client that is slow to refill keeps gaining a few % per doubling past the server's knee)."""
EPSILON = 0.05
"""The knee is the lowest level within this share of the best throughput."""
LOOKAHEAD = 2
"""The climb ends after this many doublings in a row that each added no more than ``GROWTH``
over the best level before them: a single flat doubling is often one noisy window, or a
plateau before the next rise (PostgreSQL here: 1 and 2 in flight alike, +24 % at 4)."""
SHARP = 0.5
"""... unless the doubling before the flat one added this share or more: then the curve was a
straight line up to a knee, and past it a queue only costs latency (looking one doubling
further would take a long window at four times the knee's latency)."""
CONFIRM = 2
"""Windows a decision that may end the climb, and each probe, is judged on (their mean): one
window of a fraction of a second swings by 10-30 % on a busy machine."""
MAX_HOLD = 4
"""The hold doubles after each round of probes (one up, one down) that changed nothing, up to
this many times ``hold``: at a stable knee, probes only cost."""
E_UP = 0.6
"""A probe up is kept when throughput rose by this share of the limit's rise (elasticity)."""
DRIFT = 0.3
"""A median of recent windows' throughput this far below the reference starts a new search."""
DRIFT_WINDOWS = 5
"""The drift rule judges the median of this many recent full windows (at least 3 of them)."""
FULL = 0.9
"""Only windows whose time-average in flight reached this share of the limit show drift."""
STEP = 0.1
"""A probe's size, as a share of the limit (half of it after errors)."""


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """Bounds and tuning of the controller; raises ``ValueError`` when inconsistent.

    ``minimum`` / ``maximum`` bound the limit (requests in flight), ``initial`` is where it
    starts; ``backoff`` multiplies the limit after a window with failures; ``hold`` is the
    number of windows at the settled level between two probes.
    """

    minimum: int = 1
    maximum: int = 256
    initial: int = 1
    backoff: float = 0.7
    hold: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {self.minimum}..{self.maximum}")
        if not 0 < self.backoff < 1:
            raise ValueError(f"backoff must be within (0, 1), got {self.backoff}")
        if self.hold < 1:
            raise ValueError(f"hold must be at least 1 window, got {self.hold}")

    def clamp(self, value: float) -> int:
        """``value`` rounded into ``[minimum, maximum]``."""
        return max(self.minimum, min(self.maximum, round(value)))


@dataclass(frozen=True, slots=True)
class Observation:
    """One window of a run at the current limit.

    ``latency_s``: the median latency of the requests finished in the window (seconds);
    ``completed``: requests finished; ``errors``: failed attempts (any transient failure,
    429 / 503 included); ``peak_in_flight``: the most requests in flight during the window;
    ``mean_latency_s``: their mean latency (None: take the median); ``mean_in_flight``: the
    time-average of requests in flight (None: the limit, i.e. always full).
    """

    latency_s: float
    completed: int
    errors: int = 0
    peak_in_flight: int = 0
    mean_latency_s: float | None = None
    mean_in_flight: float | None = None

    def throughput(self, limit: int) -> float | None:
        """Requests per second at ``limit`` by Little's law; None when not measurable.

        Not measurable: no completion, no latency, or a limit that was never full (the source,
        not the server, set the pace).
        """
        mean = self.latency_s if self.mean_latency_s is None else self.mean_latency_s
        if self.completed <= 0 or mean <= 0 or self.peak_in_flight < limit:
            return None
        rate = (limit if self.mean_in_flight is None else self.mean_in_flight) / mean
        return rate if math.isfinite(rate) else None


@dataclass(frozen=True, slots=True)
class Change:
    """A decided change of the limit, with what it was based on (for the log event)."""

    old: int
    new: int
    reason: str
    throughput: float
    reference: float
    latency_ms: float

    def as_event(self) -> dict[str, float | int | str]:
        """The fields of the structlog ``concurrency_changed`` event (throughput: requests/s)."""
        return {
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "throughput": round(self.throughput, 2),
            "reference": round(self.reference, 2),
            "latency_ms": round(self.latency_ms, 3),
        }


class ProbingController:
    """Decides the concurrency limit window by window (see the module docstring)."""

    def __init__(self, settings: AdaptiveSettings | None = None) -> None:
        self.settings = settings or AdaptiveSettings()
        self.limit = self.settings.clamp(self.settings.initial)
        self.searching = True
        self.after_errors = False
        self.changes = 0
        self.reference = 0.0  # the best throughput of the last search (requests/s)
        self._levels: dict[int, float] = {}  # this search's measured levels (mean rate)
        self._seen: dict[int, int] = {}  # ... and how many windows each mean holds
        self._climbing = True  # the search is still doubling
        self._flat = 0  # ... and this many doublings in a row added no more than GROWTH
        self._gain = 0.0  # ... and the last doubling multiplied the throughput by this
        self._estimated = False  # the origin-line estimate was tried
        self._line = 0  # ... at this level (0: no longer the latest guess)
        self._settled = 0  # the settled level while probing
        self._here = 0.0  # its mean throughput since it was last (re)entered
        self._home = 0  # ... over this many windows
        self._held = 0
        self._probe_up = True
        self._probe_rates: list[float] = []  # the windows of the probe under way
        self._quiet = 0  # probes in a row that changed nothing
        self._recent: deque[float] = deque(maxlen=DRIFT_WINDOWS)  # full windows held there

    def observe(self, obs: Observation) -> Change | None:
        """Take one window's figures; returns the change of limit, or None to keep it."""
        s = self.settings
        if obs.errors > 0:
            self.after_errors = True
            new = s.clamp(math.floor(self.limit * s.backoff))
            self._settle_at(new, 0.0)
            return self._move(new, "errors", 0.0, obs)
        x = obs.throughput(self.limit)
        if x is None:
            return None
        if self.searching:
            return self._search(x, obs)
        return self._hold(x, obs)

    # -- search ---------------------------------------------------------------------------

    def _search(self, x: float, obs: Observation) -> Change | None:
        s, limit = self.settings, self.limit
        earlier = max((r for level, r in self._levels.items() if level != limit), default=0.0)
        seen = self._seen.get(limit, 0)
        x = (self._levels.get(limit, 0.0) * seen + x) / (seen + 1)  # the level's mean so far
        self._levels[limit], self._seen[limit] = x, seen + 1
        climbing = self._climbing and limit < s.maximum
        grew = not earlier or x > earlier * (1 + GROWTH)
        if seen + 1 < CONFIRM and not (climbing and grew):
            return None  # only a clear gain is taken on one window; else the mean of two
        if climbing:
            sharp = self._gain >= 1 + SHARP  # the doubling before was on a straight line
            self._flat = 0 if grew else self._flat + 1
            self._gain = x / earlier if earlier else 0.0
            if grew or (self._flat < LOOKAHEAD and not sharp):  # a plateau, or noise?
                return self._move(s.clamp(limit * 2), "search", x, obs)
        self._climbing = False
        best = max(self._levels.values())
        target = (1 - EPSILON) * best
        b = min(level for level, rate in self._levels.items() if rate >= target)
        if self._seen[b] < CONFIRM:  # passed on one (lucky?) window while climbing
            return self._move(b, "search", x, obs)
        below = [level for level in self._levels if level < b]
        if not below:
            if b <= s.minimum:
                return self._settle(b, x, obs)
            return self._move(s.clamp(b // 2), "search", x, obs)
        a = max(below)
        if limit == self._line and x >= (1 - 2 * EPSILON) * best:
            return self._settle(limit, x, obs)  # the line's first guess, close enough
        if b - a <= max(1, b // 16):
            return self._settle(b, x, obs)
        line = round(a * best / self._levels[a] * (1 - EPSILON / 2))
        quarter = math.ceil((b - a) / 4) if self._estimated else 1
        self._line = 0 if self._estimated else min(b - 1, max(a + 1, line))
        self._estimated = True
        guess = min(b - quarter, max(a + quarter, line))
        if guess in self._levels:  # measured already: nothing left between
            return self._settle(b, x, obs)
        return self._move(guess, "search", x, obs)

    def _settle(self, level: int, x: float, obs: Observation) -> Change | None:
        self._settle_at(level, max(self._levels.values(), default=x))
        self._here, self._home = self._levels.get(level, x), self._seen.get(level, 1)
        return self._move(level, "settled", x, obs)

    def _settle_at(self, level: int, reference: float) -> None:
        self.searching = False
        self.reference = reference
        self._settled, self._here, self._home = level, 0.0, 0
        self._held, self._probe_up = 0, True
        self._recent.clear()
        self._probe_rates, self._quiet = [], 0

    def _research(self, x: float, obs: Observation) -> Change | None:
        self.searching, self._climbing, self._estimated, self._line = True, True, False, 0
        self._flat, self._gain = 0, 0.0
        self._levels, self._seen = {}, {}
        return self._move(self.settings.clamp(self.limit // 2), "search", x, obs)

    # -- hold and probe -------------------------------------------------------------------

    def _hold(self, x: float, obs: Observation) -> Change | None:
        s, limit = self.settings, self.limit
        if limit != self._settled:  # a probe's window
            return self._judge_probe(x, obs)
        if not self.reference:
            self.reference = x  # the first clean window after errors
        self._here = (self._here * self._home + x) / (self._home + 1)
        self._home += 1
        full = obs.mean_in_flight is None or obs.mean_in_flight >= FULL * limit
        if full:  # a limit not kept full: the client or the source slowed, not the server
            self._recent.append(x)
            recent = sorted(self._recent)
            if len(recent) >= 3 and recent[len(recent) // 2] < (1 - DRIFT) * self.reference:
                return self._research(x, obs)
        self._held += 1
        if self._held < s.hold * min(MAX_HOLD, 2 ** (self._quiet // 2)):
            return None  # a full round of probes (up, then down) that changed nothing doubles it
        step = max(1, math.floor(limit * (STEP / 2 if self.after_errors else STEP)))
        up, down = s.clamp(limit + step), s.clamp(limit - step)
        if self._probe_up and up == limit:
            self._probe_up = False
        probe = up if self._probe_up else down
        if probe == limit:
            self._held, self._probe_up = 0, True
            return None
        return self._move(probe, "probe", x, obs)

    def _judge_probe(self, x: float, obs: Observation) -> Change | None:
        limit, home = self.limit, self._settled
        self._probe_rates.append(x)
        if len(self._probe_rates) < CONFIRM:
            return None
        x = sum(self._probe_rates) / len(self._probe_rates)
        self._probe_rates = []
        if limit > home:
            kept = x >= self._here * (1 + E_UP * (limit / home - 1))
        else:
            kept = x >= (1 - EPSILON) * self.reference
        if kept:
            self.reference = max(self.reference, x)
            self._settled, self._here, self._home = limit, x, CONFIRM
            self._held, self._quiet = self.settings.hold, 0  # keep going the same way at once
            return None
        self._held, self._probe_up, self._quiet = 0, limit < home, self._quiet + 1
        self._here, self._home = 0.0, 0
        return self._move(home, "probe back", x, obs)

    def _move(self, new: int, reason: str, x: float, obs: Observation) -> Change | None:
        old, self.limit = self.limit, new
        if new == old:
            return None
        self.changes += 1
        return Change(old, new, reason, x, self.reference, obs.latency_s * 1000.0)
