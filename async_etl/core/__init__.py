"""async_etl.core."""
