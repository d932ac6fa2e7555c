"""Every file the server makes is readable by its user only (mode 600, folders 700): the
database and its -wal and -shm files, which hold answers, predictions and token hashes; the
secret key; request bodies spooled to disk; the port file; the sockets of --processes."""

from __future__ import annotations

import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api import Api
from tests.support import bearer

ROWS = 2000  # a submission body of about 40 KiB: spooled to a file past --inline-kb=1


def modes(*roots: Path) -> dict[str, str]:
    """Each file and folder under the roots (not the roots), with its mode in octal."""
    return {
        str(p): oct(stat.S_IMODE(p.lstat().st_mode))
        for root in roots
        for p in root.rglob("*")
        if not p.name.endswith(".log")  # the test's own log of the server's output
    }


def open_to_others(*roots: Path) -> dict[str, str]:
    """The files and folders under the roots that anyone but their owner may use."""
    return {path: mode for path, mode in modes(*roots).items() if int(mode, 8) & 0o077}


def slow_body(tmp: Path, seen: dict[str, str]) -> Iterator[bytes]:
    """A JSON submission sent in pieces; once the server has spooled the first pieces to a
    file, note that file's mode before sending the rest."""
    rows = ",".join(f"[{i}, {float(i)}]" for i in range(ROWS)).encode()
    body = b'{"predictions": {"columns": ["id", "y"], "data": [' + rows + b"]}}"
    half = len(body) // 2
    yield body[:half]
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        seen.update(modes(tmp) if list(tmp.rglob("crowdsource-body-*")) else {})
        time.sleep(0.02)
    yield body[half:]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory for the server with a short path (socket paths are limited to
    about 100 bytes), removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="cs-modes-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("processes", [1, 2])
def test_every_file_the_server_makes_is_its_users_alone(
    tmp_path: Path, short_tmp: Path, new_server, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """Database, -wal, -shm, secret (and the folder made for it), spooled bodies, the port
    file, the sockets among processes and their folder: none open to other users."""
    tmp = short_tmp
    monkeypatch.setenv("TMPDIR", str(tmp))  # the server's temporary directory
    data = tmp_path / "data"
    data.mkdir()
    server = new_server(
        str(data / "cs.db"),
        f"--processes={processes}",
        "--inline-kb=1",
        f"--secret-file={data / 'keys' / 'cs.secret'}",
    )
    host, bob = Api(server), Api(server)
    rows = {"columns": ["id", "y"], "data": [[i, float(i)] for i in range(ROWS)]}
    comp = host.host(
        type="regress",
        targets=["y"],
        dataset={"columns": ["id"], "data": [[i] for i in range(ROWS)]},
        answer=rows,
    )
    spooled: dict[str, str] = {}
    r = requests.post(
        f"{server.url}/api/v1/competitions/{comp['id']}/submissions",
        data=slow_body(tmp, spooled),
        headers={**bearer(bob.token), "Content-Type": "application/json"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    made = modes(data, tmp)
    assert {Path(p).name for p in made} >= {"cs.db", "cs.db-wal", "cs.db-shm", "cs.secret"}
    assert any("crowdsource-body-" in p for p in spooled), "no body was spooled"
    if processes > 1:
        assert any(p.endswith(".sock") for p in made), "no socket among the processes"
    assert {p: m for p, m in spooled.items() if int(m, 8) & 0o077} == {}
    assert open_to_others(data, tmp) == {}
    assert oct(stat.S_IMODE(server.port_file.stat().st_mode)) == "0o600"


def test_a_database_open_to_others_is_named_at_start(tmp_path: Path, new_server) -> None:
    """A database made before (or by hand) with mode 644: the server says to chmod it."""
    db = tmp_path / "old.db"
    db.touch()
    db.chmod(0o644)
    server = new_server(str(db))
    assert f"{db} can be read by other users (mode 644)" in server.log.read_text()
