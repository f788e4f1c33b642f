"""A bulk request applied by the CrateDB stand-in while its answer is lost, with no retry left.

``drop_after`` applies the statement and drops the connection unanswered; ``item_fail`` fails
one item (not written).  With ``max_retries=0`` both are given up; the summary must count the
first batch's rows, which are in the table, as delivered and the failed item as not.
"""

from __future__ import annotations

import pytest

from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.runtime.test_threads import MODES, _settings, run_mode, stored_ids


@pytest.mark.parametrize("mode", MODES)
def test_a_given_up_bulk_that_landed_is_delivered_and_a_failed_item_is_not(mode: str) -> None:
    """100 rows applied with the answer lost: delivered; 1 failed item: undelivered."""
    with CrateStandIn(StandInConfig(seed=3)) as crate:
        crate.schedule_faults("drop_after", "item_fail")
        summary = run_mode(mode, _settings(max_retries=0, concurrency=1), crate.url)
        ids = stored_ids(crate.url)
        faults = dict(crate.counters.faults)
    assert faults.get("drop_after") == 1 and faults.get("item_fail") == 1, faults
    assert len(ids) == len(set(ids)) == 2999 == summary.reconciled == summary.records
    assert summary.confirmed == 100 and summary.undelivered == 1 and summary.interrupted == 0
    assert summary.records + summary.rejected + summary.undelivered == summary.generated == 3000
    assert summary.problems() == ["1 rows not delivered after retries"]
