"""A path in a CrateDB URL is refused in one line, by both clients and the CLI."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_etl.cli import main
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.drivers.cratedb_blocking import BlockingCrateDBClient
from async_etl.errors import ConfigError


@pytest.mark.parametrize("client", [CrateDBClient, BlockingCrateDBClient])
async def test_both_clients_refuse_a_path_in_the_url(crate_standin: Any, client: Any) -> None:
    """``http://h:p/some/path``: ConfigError naming the path, not a post to ``/_sql``."""
    with pytest.raises(ConfigError) as info:
        client(crate_standin.url + "/some/path")
    message = str(info.value)
    assert "'/some/path'" in message and "\n" not in message


def test_bench_refuses_a_crate_url_with_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    """bench --sink with a path in the CrateDB URL: one line, exit 2, before connecting."""
    url = "http://127.0.0.1:4200/some/path"
    code = main(["bench", "--sink", url, "--records", "100", "--table", "t_path"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "a path ('/some/path') is not supported" in err


async def test_https_to_a_plain_http_server_is_a_config_error_not_a_retry() -> None:
    """https:// to a server that answers plain HTTP: ConfigError saying to use http://."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with CrateDBClient(f"https://127.0.0.1:{port}") as client:
            with pytest.raises(ConfigError) as info:
                await client.execute("SELECT 1")
    finally:
        server.close()
    message = str(info.value)
    assert "WRONG_VERSION_NUMBER" in message and "http://" in message.split("]")[-1]
