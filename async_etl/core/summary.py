"""The run summary: what a bench run did, as a frozen value with a JSON form and table rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class Settlement(NamedTuple):
    """What ``settle`` decided, in rows: ``landed`` and ``recovered`` are delivered.

    ``unconfirmed`` are undelivered: an abort left them, and the target does not hold them.
    """

    landed: int  # unanswered rows the count of their own ids found in the target
    unconfirmed: int  # unanswered rows it did not find
    recovered: int = 0  # rows given up after retries that it found (their answer was lost)


def settle(
    generated: int,
    delivered: int,
    rejected: int,
    undelivered: int,
    found: int | None,
    found_given_up: int | None = 0,
) -> Settlement:
    """The outcome of the rows a run left without an answer, from counts of their own ids.

    ``generated - delivered - rejected - undelivered`` rows (all counts in rows) got no answer:
    an abort cancelled their sends in flight, or they were generated and never sent.
    ``found``: how many of exactly those ids the target holds (the sink's count over the
    unanswered ranges of ``core.reckoning.open_questions``); they landed and are delivered,
    the rest are undelivered.  ``found_given_up``: how many of the ``undelivered`` rows'
    own ids the target holds (a last attempt that landed while its answer was lost); they
    are delivered too.  Never from the whole run's count minus ``delivered``: that mixes the
    two kinds, and a landed given-up batch would make never-sent rows look delivered.
    None (a sink that cannot count): none is confirmed.  Counts past the rows they are about
    confirm at most those rows.  Raises nothing.
    """
    left = max(generated - delivered - rejected - undelivered, 0)
    landed = 0 if found is None else min(max(found, 0), left)
    recovered = 0 if found_given_up is None else min(max(found_given_up, 0), undelivered)
    return Settlement(landed, left - landed, recovered)


@dataclass(frozen=True, slots=True)
class Summary:
    """The outcome of one run.  ``ok`` is False when any row was not delivered."""

    sink: str
    mode: str
    records: int
    seconds: float
    batches: int
    batch_size: int
    concurrency: int
    generators: int
    errors: int
    retries: int
    rejected: int
    undelivered: int
    latency_ms: dict[str, float]
    cpu_percent: float
    peak_rss_mb: float
    generated: int = 0
    measured_records: int = -1  # rows delivered after the warm-up; -1: no warm-up, = records
    reconciled: int | None = None
    stopped_by: str = "records"
    uvloop: bool = False
    seed: int = 0
    id_range: tuple[int, int] = (0, 0)
    reasons: dict[str, int] = field(default_factory=dict)  # rows not delivered, by reason
    error_reasons: dict[str, int] = field(default_factory=dict)  # failed attempts, by reason
    warmup_seconds: float = 0.0
    warmup_reached: bool = True  # False: the run ended inside its warm-up, figures include it
    extra: dict[str, Any] = field(default_factory=dict)
    interrupted: int = 0  # of ``undelivered``: rows an abort left unconfirmed (``settle``)
    confirmed: int = 0  # of ``records``: rows with no answer (an abort's, or given up) whose
    # own ids the end-of-run count found in the target (``settle``)
    uncounted: int = 0  # of ``undelivered``: rows with no answer whose ids the end-of-run
    # count did not reach before its limit (``runtime.recount``): not confirmed, so undelivered

    @property
    def rows_per_s(self) -> float:
        """Delivered rows per second of wall time (warm-up excluded)."""
        rows = self.records if self.measured_records < 0 else self.measured_records
        return rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every generated row is delivered and the target count agrees."""
        if self.rejected or self.undelivered or self.records != self.generated:
            return False
        return self.reconciled is None or self.reconciled == self.records

    def problems(self) -> list[str]:
        """One line per way in which the run fell short (empty when ``ok``)."""
        out = []
        if self.rejected:
            why = "; ".join(f"{n} x {reason}" for reason, n in list(self.reasons.items())[:3])
            out.append(f"{self.rejected} rows rejected by the sink" + (f": {why}" if why else ""))
        if self.undelivered > self.interrupted:
            out.append(f"{self.undelivered - self.interrupted} rows not delivered after retries")
        if self.interrupted:
            out.append(f"{self.interrupted} rows not delivered: the run was aborted before the "
                       "sink confirmed them (never sent, or cancelled in flight, and not found "
                       "by the count of their ids)")  # fmt: skip
        if self.uncounted:
            out.append(f"{self.uncounted} of the undelivered rows were not looked up: the "
                       "end-of-run count of their ids ran out of time (request_timeout); "
                       "some may be in the target")  # fmt: skip
        lost = self.generated - self.records - self.rejected - self.undelivered
        if lost:  # settle() leaves none: a bookkeeping bug if this shows
            out.append(f"{lost} generated rows unaccounted for")
        if self.reconciled is not None and self.reconciled != self.records:
            out.append(f"target holds {self.reconciled} rows of the run, {self.records} reported")
        return out

    def warmup_note(self) -> str:
        """Why the figures include the warm-up: the run ended before it did."""
        return (
            f"not reached (ran {self.seconds:.1f} s of {self.warmup_seconds:g} s); "
            "figures include it"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--json-out``): every field plus ``rows_per_s`` and ``ok``."""
        data = asdict(self)
        data["id_range"] = list(self.id_range)
        data["rows_per_s"] = round(self.rows_per_s, 1)
        data["ok"] = self.ok
        return data

    def _concurrency(self) -> str:
        """The fixed concurrency, or ``auto MIN-MAX: final F (N changes)``."""
        auto = self.extra.get("adaptive")
        if not auto:
            return str(self.concurrency)
        final, changes = auto["final"], auto["changes"]
        return f"auto {auto['min']}-{auto['max']}: final {final} ({changes} changes)"

    def table_rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the printed summary table."""
        lat = self.latency_ms
        rows = [
            ("sink", self.sink),
            ("mode", f"{self.mode}{' + uvloop' if self.uvloop else ''}"),
            ("records", f"{self.records:,}"),
            ("seconds", f"{self.seconds:.2f}"),
            ("rows/s", f"{self.rows_per_s:,.0f}"),
            ("batches", f"{self.batches:,} x {self.batch_size:,}"),
            ("concurrency / generators", f"{self._concurrency()} / {self.generators}"),
            ("errors / retries", f"{self.errors} / {self.retries}"),
            ("rejected / undelivered", f"{self.rejected} / {self.undelivered}"),
            ("latency p50/p95/p99 ms", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}"),
            ("cpu % / peak rss MB", f"{self.cpu_percent:.0f} / {self.peak_rss_mb:.0f}"),
            ("reconciled", "n/a" if self.reconciled is None else f"{self.reconciled:,} in target"),
            ("stopped by", self.stopped_by),
        ]
        if not self.warmup_reached:
            rows.append(("warm-up", self.warmup_note()))
        return rows + self._rate_rows() + self._scale_out_rows()

    def _scale_out_rows(self) -> list[tuple[str, str]]:
        """``--ray`` / ``--processes``: workers, losses and re-sent units, rows/s per worker."""
        for key, kind, label in (
            ("ray", "actor", "ray actors"),
            ("processes", "worker", "worker processes"),
        ):
            figures = self.extra.get(key)
            if not figures:
                continue
            lost = len(figures[f"lost_{kind}s"])
            by = ", ".join(f"{n} {r:,.0f}" for n, r in figures[f"rows_per_s_by_{kind}"].items())
            return [
                (
                    f"{label} (lost / units re-sent)",
                    f"{figures[f'{kind}s']} ({lost} / {figures['resent_units']})",
                ),
                (f"rows/s by {kind}", by or "-"),
            ]
        return []

    def _rate_rows(self) -> list[tuple[str, str]]:
        """Rate mode: target vs achieved, latency from the due time, schedule lag."""
        rate = self.extra.get("rate")
        if not rate:
            return []
        due, lag = rate["latency_from_due_ms"], rate["schedule_lag_ms"]
        return [
            ("rate", rate["verdict"]),
            (
                "from due time p50/p95/p99 ms",
                f"{due['p50']:.1f} / {due['p95']:.1f} / {due['p99']:.1f}",
            ),
            ("schedule lag p99 / max ms", f"{lag['p99']:.1f} / {lag['max']:.1f}"),
            (
                "late batches",
                f"{rate['late_batches']:,} (sent > {rate['late_after_ms']:g} ms late)",
            ),
        ]
