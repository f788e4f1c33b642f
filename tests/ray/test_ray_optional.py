"""Ray stays optional: nothing imports it without --ray; missing or unreachable Ray is one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from async_etl.cli import main
from tests.integration.jobs_helpers import job_toml

PROBE = """
import sys
from async_etl.cli import main
from tests.integration.jobs_helpers import job_toml
import async_etl
code = main(["bench", "--sink", "null://", "--records", "2000", "--generators", "0",
             "--log-format", "json"])
print("RAY" if "ray" in sys.modules else "NO-RAY", code)
"""


def test_import_and_a_local_bench_do_not_import_ray() -> None:
    """``import async_etl`` and a bench without --ray leave ``ray`` unimported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "NO-RAY 0"


def test_ray_not_installed_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ray without Ray installed: exit 2 and one line saying how to install it."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = main(["bench", "--sink", "null://", "--records", "100", "--ray", "--generators", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "Ray is not installed" in err[0] and "async-etl[ray]" in err[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", ["{host}:{port}", "ray://{host}:{port}"])
def test_unreachable_ray_address_is_one_line_exit_2(
    form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ray at an address where nothing listens: exit 2, one line naming the address."""
    address = form.format(host="127.0.0.1", port=_closed_port())
    code = main(["bench", "--sink", "null://", "--records", "100", "--ray", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert f"--ray {address}: no Ray cluster reachable there" in err[0]


def test_malformed_ray_address_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """--ray with something that is not an address: exit 2, one line saying what is expected."""
    code = main(["bench", "--sink", "null://", "--records", "100", "--ray", "nowhere"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "expected local, auto, HOST:PORT or ray://HOST:PORT" in err[0]


def test_ray_with_thread_mode_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """--ray with --mode threads: exit 2, one line (each actor runs the async engine)."""
    code = main(["bench", "--sink", "null://", "--ray", "--mode", "threads"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--mode threads" in err[0]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--rate", "1000", "--duration", "1"], "--rate / --ramp"),
        (["--concurrency", "auto"], "--concurrency auto"),
        (["--metrics-port", "0"], "--metrics-port"),
    ],
)
def test_settings_not_spread_over_actors_are_refused(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings the actors would ignore are refused with --ray: exit 2, one line naming them."""
    code = main(["bench", "--sink", "null://", "--ray", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{named} is not supported with --ray yet" in err[0]


def test_run_with_unreachable_ray_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run JOB --ray at an address where nothing listens: exit 2, one line, before any run."""
    job = tmp_path / "job.toml"
    dsn = "postgresql://postgres@127.0.0.1:5432/never_used"
    job.write_text(job_toml("j", dsn, "dw.t"))
    address = f"127.0.0.1:{_closed_port()}"
    code = main(["run", str(job), "--ray", address, "--log-format", "json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].endswith(f"--ray {address}: no Ray cluster reachable there (Connection refused)")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("command", [["bench", "--sink", "null://"], ["orchestrate", "plan.toml"]])
def test_ray_actors_without_ray_is_one_line_exit_2(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ray-actors without --ray would do nothing: exit 2, one line."""
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'name = "p"\nstate = "postgresql://u@127.0.0.1:1/x"\n[[jobs]]\nname = "s"\nkind = "sleep"\n'
    )
    args = [str(plan) if a == "plan.toml" else a for a in command]
    code = main([*args, "--ray-actors", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--ray-actors needs --ray" in err[0]


KILLED_ACTOR = """
import os, signal, time
from async_etl.runtime.ray_cluster import connect
ray = connect("local", num_cpus=1, object_store_memory=80 * 1024 * 1024)

@ray.remote(num_cpus=0)
class Victim:
    def pid(self) -> int:
        return os.getpid()

victim = Victim.remote()
os.kill(ray.get(victim.pid.remote()), signal.SIGKILL)
time.sleep(6)  # Ray's driver thread reports the death a moment later
ray.shutdown()
"""


def test_ray_reports_of_a_dead_actor_stay_off_stdout() -> None:
    """Ray's report of a SIGKILLed actor goes to stderr: stdout is ours (``--json-out -``)."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_ACTOR], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "worker died" in done.stderr.lower()
