"""async_etl.cli."""
