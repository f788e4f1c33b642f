"""async_etl.jobs."""
