"""Shared fixtures come from the package's pytest plugin (``async_etl.testing.pytest_plugin``).

It is loaded by ``-p`` in ``pyproject.toml`` (and by its ``pytest11`` entry point when the
package is installed): ``pg_server_dsn``, ``pg_dsn`` and ``crate_standin``.
"""
