from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from async_etl.runtime.lanes import Lanes


@pytest.mark.both_loops
async def test_every_job_runs_once_and_lanes_are_reused() -> None:
    """200 jobs, at most 3 at a time: each runs exactly once, on at most 3 lanes (tasks)."""
    done: list[int] = []
    tasks: set[object] = set()
    limit = anyio.Semaphore(3)

    async def work(job: int) -> None:
        tasks.add(anyio.get_current_task().id)
        await anyio.lowlevel.checkpoint()
        done.append(job)
        limit.release()

    with anyio.fail_after(10):  # a lane left parked after close would hold the group open
        async with anyio.create_task_group() as tg:
            lanes = Lanes(tg, work, dropped=lambda job: pytest.fail(f"job {job} dropped"))
            for job in range(200):
                await limit.acquire()
                lanes.submit(job)
            lanes.close()
    assert sorted(done) == list(range(200))
    assert lanes.started == len(tasks) <= 3


async def test_close_ends_parked_lanes_and_busy_ones_after_their_job() -> None:
    """close(): the task group exits, the busy job finishes, and submit is refused after."""
    finished: list[str] = []
    release = anyio.Event()

    async def work(job: str) -> None:
        if job == "slow":
            await release.wait()
        finished.append(job)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            lanes = Lanes(tg, work, dropped=lambda job: pytest.fail(f"job {job} dropped"))
            lanes.submit("quick")
            await anyio.sleep(0.01)  # "quick" done: its lane is parked
            lanes.submit("slow")  # reuses the parked lane
            lanes.close()
            release.set()
    assert finished == ["quick", "slow"] and lanes.started == 1
    with pytest.raises(RuntimeError, match="after the lanes were closed"):
        lanes.submit("late")


@pytest.mark.both_loops
async def test_a_job_handed_to_a_lane_being_cancelled_is_dropped_not_lost() -> None:
    """A parked lane cancelled, then handed a job before it runs: dropped gets it, work never."""
    ran: list[str] = []
    dropped: list[str] = []

    async def work(job: str) -> None:
        ran.append(job)

    async with anyio.create_task_group() as tg:
        lanes = Lanes(tg, work, dropped.append)
        lanes.submit("first")
        await anyio.sleep(0.01)  # the lane ran it and is parked now
        tg.cancel_scope.cancel()  # the parked lane's cancellation is delivered, not yet run
        lanes.submit("second")  # so the job handed to it now cannot be started
    assert ran == ["first"] and dropped == ["second"]


async def test_an_error_in_a_job_fails_the_task_group() -> None:
    """A job that raises ends the group with that error, as a task per job would."""

    async def work(job: int) -> None:
        if job == 2:
            raise ValueError("job 2 failed")
        await anyio.lowlevel.checkpoint()

    with pytest.raises(ExceptionGroup) as caught:
        async with anyio.create_task_group() as tg:
            lanes = Lanes(tg, work, dropped=lambda job: None)
            for job in range(5):
                lanes.submit(job)
            lanes.close()
    assert caught.group_contains(ValueError, match="job 2 failed")
