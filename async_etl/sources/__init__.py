"""async_etl.sources."""
