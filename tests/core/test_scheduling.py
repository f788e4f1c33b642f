"""The orchestrator's scheduling step (core.scheduling): claim / start / release / wait / done."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.retry import RetryPolicy
from async_etl.core.scheduling import (
    Action,
    Claim,
    Done,
    Gate,
    JobView,
    Limits,
    Release,
    Start,
    Wait,
    decide,
    settle,
)

DB = "pg://h/db"


def view(name: str, status: str = "PENDING", **kw: object) -> JobView:
    kw.setdefault("target_key", DB)
    kw.setdefault("needs", {DB: 1})
    return JobView(name, status, **kw)  # type: ignore[arg-type]


def names(actions: list[Action], kind: type) -> list[str]:
    return [a.job for a in actions if isinstance(a, kind)]  # type: ignore[attr-defined]


def test_ready_jobs_are_claimed_in_the_given_order_up_to_the_free_local_tokens() -> None:
    """Ready jobs are claimed in order, no more than local tokens are free; the step then waits."""
    jobs = [view("a"), view("b"), view("c")]
    out = decide(jobs, {"a": (), "b": (), "c": ()}, 0.0, Limits(local_free=2, free={DB: 9}))
    assert names(out, Claim) == ["a", "b"]
    assert out[-1] == Wait(None)


def test_a_job_waits_for_every_dependency_to_succeed() -> None:
    """A job is claimed only when all of its dependencies SUCCEEDED."""
    deps = {"a": (), "b": (), "c": ("a", "b")}
    limits = Limits(local_free=5, free={DB: 9})
    running = [view("a", "SUCCEEDED"), view("b", "RUNNING", phase="running"), view("c")]
    assert names(decide(running, deps, 0.0, limits), Claim) == []
    done = [view("a", "SUCCEEDED"), view("b", "SUCCEEDED"), view("c")]
    assert names(decide(done, deps, 0.0, limits), Claim) == ["c"]


def test_a_job_in_back_off_is_passed_over_and_the_step_waits_for_its_end() -> None:
    """A job whose back-off runs is not claimed (later ones are) and sets the wake-up time."""
    jobs = [view("a", not_before=7.5), view("b")]
    out = decide(jobs, {"a": (), "b": ()}, 5.0, Limits(local_free=3, free={DB: 9}))
    assert names(out, Claim) == ["b"]
    assert out[-1] == Wait(7.5)


def test_reservations_made_in_one_step_count_against_the_next_job() -> None:
    """Two jobs needing 2 of a database with 3 free: one is claimed; a job elsewhere still is."""
    jobs = [view("a", needs={DB: 2}), view("b", needs={DB: 2}), view("c", needs={"other": 2})]
    out = decide(jobs, dict.fromkeys("abc", ()), 0.0, Limits(3, free={DB: 3, "other": 2}))
    assert names(out, Claim) == ["a", "c"]


def test_a_shut_breaker_claims_nothing_for_its_target_and_its_reopening_wakes_the_loop() -> None:
    """No job of a target whose breaker is shut is claimed; the step wakes when it reopens."""
    jobs = [view("a"), view("b", target_key="x", needs={"x": 1})]
    limits = Limits(5, free={DB: 9, "x": 9}, gates={DB: Gate.SHUT}, reopen_at=30.0)
    out = decide(jobs, {"a": (), "b": ()}, 10.0, limits)
    assert names(out, Claim) == ["b"]
    assert out[-1] == Wait(30.0)


def test_a_reopening_already_past_does_not_make_the_loop_spin() -> None:
    """A breaker that reopened while no token is free: wait to be woken, not for a past time."""
    out = decide([view("a")], {"a": ()}, 40.0, Limits(0, free={DB: 9}, reopen_at=30.0))
    assert out == [Wait(None)]


def test_a_half_open_breaker_lets_exactly_one_job_be_claimed() -> None:
    """While the breaker offers one trial, one job of its target is claimed, none while it waits."""
    limits = Limits(5, free={DB: 9}, gates={DB: Gate.TRIAL})
    out = decide([view("a"), view("b")], {"a": (), "b": ()}, 0.0, limits)
    assert names(out, Claim) == ["a"]
    waiting = [view("a", phase="claimed"), view("b")]
    assert names(decide(waiting, {"a": (), "b": ()}, 0.0, limits), Claim) == []


def test_a_claimed_job_waiting_for_its_slot_holds_no_breaker_ticket() -> None:
    """Acquisition order: only a job holding its global slot is started (takes the ticket)."""
    jobs = [view("a", phase="claimed"), view("b", phase="slotted")]
    out = decide(jobs, {"a": (), "b": ()}, 0.0, Limits(0, free={DB: 9}))
    assert names(out, Start) == ["b"]
    assert out[-1] == Wait(None)


def test_a_breaker_that_opened_while_the_job_waited_for_its_slot_releases_the_slot() -> None:
    """The breaker is asked when the slot is held: shut by then, slot and token go back."""
    jobs = [view("a", "PENDING", phase="slotted")]
    out = decide(jobs, {"a": ()}, 0.0, Limits(0, free={DB: 9}, gates={DB: Gate.SHUT}))
    assert out[0] == Release("a", f"the breaker of {DB} is open")
    assert names(out, Start) == []


def test_of_two_slotted_jobs_only_one_becomes_the_half_open_trial() -> None:
    """A half-open breaker starts one slotted job (the trial) and releases the other."""
    jobs = [view("a", phase="slotted"), view("b", phase="slotted")]
    out = decide(jobs, {"a": (), "b": ()}, 0.0, Limits(0, free={DB: 9}, gates={DB: Gate.TRIAL}))
    assert names(out, Start) == ["a"] and names(out, Release) == ["b"]


def test_stopping_claims_nothing_releases_slotted_jobs_and_ends_when_idle() -> None:
    """A stopping plan claims nothing, releases slotted jobs, and is done once none is in flight."""
    jobs = [view("a", phase="slotted"), view("b", not_before=3.0)]
    out = decide(jobs, {"a": (), "b": ()}, 0.0, Limits(5, free={DB: 9}), stopping=True)
    assert out == [Release("a", "the plan is stopping"), Wait(None)]
    idle = [view("a"), view("b")]
    assert decide(idle, {"a": (), "b": ()}, 0.0, Limits(5), stopping=True) == [Done()]


def test_the_plan_is_done_when_no_job_is_pending_or_in_flight() -> None:
    """Every job finished: Done; one still in flight: wait to be woken."""
    deps = {"a": (), "b": ()}
    finished = [view("a", "SUCCEEDED"), view("b", "SKIPPED")]
    assert decide(finished, deps, 0.0, Limits(5)) == [Done()]
    leaving = [view("a", "SUCCEEDED"), view("b", "PENDING", phase="leaving")]
    assert decide(leaving, deps, 0.0, Limits(0)) == [Wait(None)]


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[JobView], Limits, bool]:
    dbs = ["d0", "d1", "d2"]
    jobs = []
    for i in range(draw(st.integers(0, 8))):
        needs = draw(st.dictionaries(st.sampled_from(dbs), st.integers(1, 3), max_size=2))
        jobs.append(
            JobView(
                f"j{i}",
                draw(st.sampled_from(["PENDING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED"])),
                draw(st.sampled_from(["idle", "idle", "claimed", "slotted", "running"])),
                draw(st.sampled_from(dbs)),
                draw(st.sampled_from([0.0, 5.0, 20.0])),
                needs,
            )
        )
    free = draw(st.dictionaries(st.sampled_from(dbs), st.integers(0, 4)))
    gates = draw(st.dictionaries(st.sampled_from(dbs), st.sampled_from(list(Gate))))
    limits = Limits(draw(st.integers(0, 4)), free, gates, draw(st.sampled_from([None, 15.0])))
    return jobs, limits, draw(st.booleans())


@given(situations())
def test_the_step_never_oversteps_a_limit(case: tuple[list[JobView], Limits, bool]) -> None:
    """Claims fit tokens, budgets, back-offs and gates; only slotted jobs start; one trial each."""
    jobs, limits, stopping = case
    now = 10.0
    out = decide(jobs, {j.name: () for j in jobs}, now, limits, stopping=stopping)
    by = {j.name: j for j in jobs}
    assert isinstance(out[-1], Wait | Done) and not any(
        isinstance(a, Wait | Done) for a in out[:-1]
    )
    claimed = [by[n] for n in names(out, Claim)]
    started = [by[n] for n in names(out, Start)]
    assert len(claimed) <= max(0, limits.local_free)
    assert all(j.status == "PENDING" and j.phase == "idle" and j.not_before <= now for j in claimed)
    used: dict[str, int] = {}
    for j in claimed:
        for db, n in j.needs.items():
            used[db] = used.get(db, 0) + n
    assert all(n <= limits.free.get(db, 0) for db, n in used.items())
    assert all(j.phase == "slotted" for j in started + [by[n] for n in names(out, Release)])
    gate = limits.gates.get
    assert all(gate(j.target_key, Gate.OPEN) is not Gate.SHUT for j in claimed + started)
    for target in {j.target_key for j in jobs if gate(j.target_key, Gate.OPEN) is Gate.TRIAL}:
        waiting = [j for j in jobs if j.target_key == target and j.phase == "claimed"]
        new = [j for j in claimed if j.target_key == target]
        trials = [j for j in started if j.target_key == target]
        assert len(trials) <= 1 and len(new) <= 1
        assert not new or not (waiting or trials)
    if stopping:
        assert claimed == [] and started == []


def outcome_of(
    result: str, *, transient: bool = False, attempts: int = 1, stopping: bool = False
) -> tuple[str, str, float, tuple[str, ...]]:
    jobs = [view("a", "RUNNING", phase="running"), view("b"), view("c"), view("d", phase="claimed")]
    deps: Mapping[str, tuple[str, ...]] = {"a": (), "b": ("a",), "c": ("b",), "d": ("a",)}
    s = settle(
        "a",
        result,
        transient=transient,
        attempts=attempts,
        policy=RetryPolicy(max_retries=2, base=1.0, cap=10.0),
        jitter=0.5,
        stopping=stopping,
        jobs=jobs,
        deps=deps,
    )
    return s.status, s.outcome, s.delay, s.skip


def test_a_success_settles_as_succeeded_and_skips_nothing() -> None:
    """SUCCEEDED: the breaker hears success, no dependent is touched."""
    assert outcome_of("SUCCEEDED") == ("SUCCEEDED", "success", 0.0, ())


def test_a_transient_failure_is_retried_with_the_policys_back_off_until_it_gives_up() -> None:
    """Transient failures retry after the policy's delay; past max_retries the job FAILs."""
    assert outcome_of("FAILED", transient=True, attempts=1) == ("PENDING", "transient", 0.5, ())
    assert outcome_of("FAILED", transient=True, attempts=2) == ("PENDING", "transient", 1.0, ())
    assert outcome_of("FAILED", transient=True, attempts=3) == (
        "FAILED",
        "transient",
        0.0,
        ("b", "c"),
    )


def test_a_permanent_failure_skips_the_pending_idle_transitive_dependents() -> None:
    """A permanent failure is final; its pending dependents that hold nothing are SKIPPED."""
    assert outcome_of("FAILED") == ("FAILED", "permanent", 0.0, ("b", "c"))


def test_a_stopped_job_skips_dependents_unless_the_whole_plan_stops() -> None:
    """A job that stopped on its own skips its dependents; a stopping plan leaves them pending."""
    assert outcome_of("STOPPED") == ("STOPPED", "stopped", 0.0, ("b", "c"))
    assert outcome_of("STOPPED", stopping=True) == ("STOPPED", "stopped", 0.0, ())
    assert outcome_of("FAILED", transient=True, stopping=True)[0] == "FAILED"
