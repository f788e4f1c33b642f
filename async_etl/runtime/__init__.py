"""async_etl.runtime."""
