"""async_etl.orchestrator."""
