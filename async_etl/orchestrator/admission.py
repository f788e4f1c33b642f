"""Budget admission: start a job only when every database it uses can give it its minimum.

Why: a job takes one budget token per connection, one at a time (state store, source reader,
target writer, then more chunk workers).  If every running job holds one token of a database
and waits for a second, nobody ever gets one: a deadlock.  So the scheduler reserves each job's
*minimum* — the number of connections it needs at once to make progress — and admits a job
only when, per database, the reserved minimums of the running jobs plus its own fit the budget.
Whatever is left over is shared by the running jobs' extra workers; since every admitted job
holds or will get its minimum, each can always progress and give tokens back.

A mapper job's minimum on a database is what ``run_job`` checks before it starts
(``core.job_budget``): its state store's connection plus what one chunk holds there (up to 2,
one connection for a chunk whose source and target are one PostgreSQL database); a synthetic
job's is its ``connections``.  Pure: database identity (``key``) and each database's limit
(``limit``) are passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from async_etl.core.job_budget import minimum, needed_connections, refusal
from async_etl.errors import ConfigError
from async_etl.orchestrator.plan import PlanJob


def minimum_connections(job: PlanJob, key: Callable[[str], str]) -> dict[str, int]:
    """Database key -> connections ``job`` needs at once there to make progress."""
    if job.synthetic is not None:
        n = job.synthetic.connections
        return {key(job.target): n} if n else {}
    assert job.spec is not None
    spec = job.spec
    need = minimum(spec.state.url, spec.source.url, spec.target.url, key)
    return {key(url): n for url, n in need.items()}


def _refused(name: str, job: PlanJob, db: str, limit: int, key: Callable[[str], str]) -> str:
    """The one line refusing job ``name`` a budget of ``limit`` on database ``db``."""
    if job.spec is None:
        n = minimum_connections(job, key)[db]
        return (
            f"[budgets] {db}: {limit} connection(s) cannot run job {name!r}, "
            f"which needs {n} at once"
        )
    spec = job.spec
    why = needed_connections(spec.state.url, spec.source.url, spec.target.url, key)[db]
    return "[budgets] " + refusal(name, db, limit, why)


class Admission:
    """Reservations of running jobs' minimum connections per database."""

    def __init__(
        self, jobs: Mapping[str, PlanJob], key: Callable[[str], str], limit: Callable[[str], int]
    ) -> None:
        """Raises ``ConfigError`` when a job needs more connections than a budget allows."""
        self._limit = limit
        self._reserved: Counter[str] = Counter()
        self._urls: dict[str, str] = {}
        self.needs: dict[str, dict[str, int]] = {}
        for name, job in jobs.items():
            urls = [job.target] + (
                [job.spec.source.url, job.spec.state.url] if job.spec is not None else []
            )
            for url in urls:
                self._urls.setdefault(key(url), url)
            self.needs[name] = minimum_connections(job, key)
            for db, n in self.needs[name].items():
                if n > limit(self._urls[db]):
                    raise ConfigError(_refused(name, job, db, limit(self._urls[db]), key))

    def fits(self, name: str) -> bool:
        """True when job ``name``'s minimum fits next to the running jobs' reservations."""
        return all(
            self._reserved[db] + n <= self._limit(self._urls[db])
            for db, n in self.needs[name].items()
        )

    def free(self) -> dict[str, int]:
        """Database key -> connections not reserved by running jobs' minimums."""
        return {db: self._limit(url) - self._reserved[db] for db, url in self._urls.items()}

    def reserved(self, db: str, *, without: str | None = None) -> int:
        """Connections reserved on database key ``db`` by running jobs (less job ``without``'s)."""
        mine = self.needs[without].get(db, 0) if without is not None else 0
        return self._reserved[db] - mine

    def reserve(self, name: str) -> None:
        """Reserve job ``name``'s minimum (call when it starts)."""
        self._reserved.update(self.needs[name])

    def release(self, name: str) -> None:
        """Give job ``name``'s reservation back (call when its attempt ends)."""
        self._reserved.subtract(self.needs[name])
