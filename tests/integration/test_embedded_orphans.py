"""A SIGKILLed process's embedded-server directory is removed by the next embedded start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from async_etl.drivers.postgres_embedded import OWNER, PREFIX, embedded_postgres, remove_orphans


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def _leftover(parent: Path, name: str, owner: int | None, postmaster: str | None = None) -> Path:
    tmp = parent / f"{PREFIX}{name}"
    (tmp / "data").mkdir(parents=True)
    (tmp / "data" / "base").write_bytes(b"x" * 1000)
    if owner is not None:
        (tmp / OWNER).write_text(f"{owner}\n")
    if postmaster is not None:
        (tmp / "data" / "postmaster.pid").write_text(postmaster)
    return tmp


def test_only_directories_of_exited_owners_without_a_live_server_are_removed(
    tmp_path: Path,
) -> None:
    """Dead owner: removed (also with a stale postmaster.pid); live owner or none: kept."""
    dead = _dead_pid()
    gone = _leftover(tmp_path, "gone", dead)
    stale = f"{dead}\n{tmp_path}\n0\n5999\n{tmp_path}\nlocalhost\n0 0\nready\n"
    gone_too = _leftover(tmp_path, "gone2", dead, postmaster=stale)
    live_owner = _leftover(tmp_path, "live", os.getpid())
    live_server = _leftover(tmp_path, "server", dead, postmaster=f"{os.getpid()}\n")
    unowned = _leftover(tmp_path, "unowned", None)
    other = tmp_path / "not-ours"
    other.mkdir()
    assert sorted(remove_orphans(tmp_path)) == sorted([gone, gone_too])
    assert not gone.exists() and not gone_too.exists()
    assert live_owner.exists() and live_server.exists() and unowned.exists() and other.exists()


def test_an_embedded_start_removes_a_killed_runs_directory(tmp_path: Path) -> None:
    """embedded_postgres() sweeps a dead owner's directory and records its own pid in its own."""
    gone = _leftover(tmp_path, "killed", _dead_pid())
    with embedded_postgres(parent=tmp_path):
        assert not gone.exists()
        (mine,) = tmp_path.glob(PREFIX + "*")
        assert (mine / OWNER).read_text().strip() == str(os.getpid())
    assert list(tmp_path.glob(PREFIX + "*")) == []


def test_a_server_left_running_by_a_killed_owner_is_stopped_and_removed(tmp_path: Path) -> None:
    """SIGKILL the process holding an embedded server: the next sweep stops it and deletes it."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from async_etl.drivers.postgres_embedded import embedded_postgres\n"
        "with embedded_postgres(parent=Path(sys.argv[1])):\n"
        "    print('up', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    finally:
        proc.kill()
        proc.wait()
    (left,) = tmp_path.glob(PREFIX + "*")
    postmaster = int((left / "data" / "postmaster.pid").read_text().split()[0])
    assert remove_orphans(tmp_path) == [left]
    assert not left.exists()
    assert (
        not Path(f"/proc/{postmaster}").exists()
        or " Z " in Path(f"/proc/{postmaster}/stat").read_text()
    )
