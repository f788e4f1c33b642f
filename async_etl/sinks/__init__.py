"""async_etl.sinks."""
