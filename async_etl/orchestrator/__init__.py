"""The orchestrator: many jobs on one event loop under local, global and budget limits.

``load_plan`` reads a plan file, ``Orchestrator(plan).run()`` runs it, ``request_plan_stop``
asks a running plan to stop (what ``async-etl stop PLAN_NAME`` calls).
"""

from __future__ import annotations

from async_etl.orchestrator.driver import JobRunner, Orchestrator, PlanOutcome
from async_etl.orchestrator.plan import Plan, load_plan
from async_etl.orchestrator.state import request_plan_stop

__all__ = ["JobRunner", "Orchestrator", "Plan", "PlanOutcome", "load_plan", "request_plan_stop"]
