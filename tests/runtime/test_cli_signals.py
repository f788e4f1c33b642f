"""The commands' one signal helper: first signal -> gentle stop, second -> at once, then done."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from async_etl.cli.signals import watch_signals


async def test_first_and_second_signal_call_their_actions_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM then SIGINT: ``first('SIGTERM')``, ``second('SIGINT')``, the notes, then return."""
    calls: list[tuple[str, str]] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: watch_signals(
                    lambda name: calls.append(("first", name)),
                    lambda name: calls.append(("second", name)),
                    first_note="stopping",
                    second_note="now",
                )
            )
            await anyio.sleep(0.05)  # the receiver is installed
            os.kill(os.getpid(), signal.SIGTERM)
            while not calls:
                await anyio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
    assert calls == [("first", "SIGTERM"), ("second", "SIGINT")]
    assert capsys.readouterr().err == "async-etl: stopping\nasync-etl: now\n"
