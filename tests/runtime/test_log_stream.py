"""The CLI's log lines follow ``sys.stderr`` when a host or test swaps it after configuration."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from async_etl.log import configure_logging


def test_events_go_to_the_current_stderr_not_a_closed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """After configuration, a replaced (and the old closed) stderr still receives events."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("json")
    log = structlog.get_logger("async_etl.test")
    log.info("before_swap")
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    first.close()
    log.info("after_swap", n=1)
    assert '"event":"after_swap"' in second.getvalue()
    assert '"n":1' in second.getvalue()
