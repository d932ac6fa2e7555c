"""`%crowdsource serve`: a real crowdsource server as a child process of the kernel.

The server runs as `python -m crowdsource.notebook.embedded ...`, which starts the ordinary
server application on a temporary SQLite database, in a folder only this user can open (mode
700: it holds the hidden answers and the server's secret). The folder is removed on every way
out: `serve --stop`, the kernel's exit (atexit), the server's own end, crash included (a
thread of the kernel waits for it), and the kernel's abrupt death: the server's standard input
is a pipe from the kernel, so when the kernel dies the pipe closes and the server stops itself
and removes the folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

__all__ = ["PREFERRED_PORT", "EmbeddedServer", "main", "port_is_free"]

WORKDIR_PREFIX = "crowdsource-serve-"
PREFERRED_PORT = 8889  # the port `%crowdsource connect` and the docs assume


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on `port` (so a server may take it)."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedServer:
    """A crowdsource server on a temporary SQLite database, owned by this kernel."""

    def __init__(self, *, port: int | None = None, scoring: str = "thread") -> None:
        self.port = port or 0  # 0: the server picks a free port and writes it to port_file
        self.scoring = scoring
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self.workdir.chmod(0o700)  # mkdtemp's mode already; said here because it matters
        self.db = self.workdir / "crowdsource.db"
        self.log = self.workdir / "server.log"
        self.port_file = self.workdir / "server.port"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._last_words: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedServer {self.url} {state}, database {self.db}>"

    @property
    def url(self) -> str:
        """The server's base URL (its port is known once it listens)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line of the server process."""
        return [
            sys.executable,
            "-m",
            "crowdsource.notebook.embedded",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--port-file={self.port_file}",
            f"--db={self.db}",
            f"--scoring={self.scoring}",
            "--log-level=WARN",
        ]

    def start(self, *, timeout: float = 60.0) -> EmbeddedServer:
        """Start the process and wait until the API answers."""
        with self.log.open("ab") as log:
            # A session of its own: Jupyter kills or interrupts a kernel's whole process
            # group, and the server must outlive the kernel long enough to clean up after it.
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                start_new_session=True,
            )
        atexit.register(self.stop)
        proc = self._proc
        threading.Thread(
            target=self._clean_after, args=(proc,), name="crowdsource-serve-watch", daemon=True
        ).start()
        self._wait_ready(timeout)
        return self

    def _clean_after(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the server process to end, however it ends; then remove its folder."""
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        self._last_words = self._tail()  # the log goes with the folder
        self.remove_workdir()

    def remove_workdir(self) -> None:
        """Remove the temporary folder (the database, the secret, the log)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_ready(self, timeout: float) -> None:
        """Block until the server answers; raise RuntimeError with its log if it cannot start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                tail = self._tail()
                self.stop()
                raise RuntimeError(f"the embedded server exited: {tail}")
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                try:
                    requests.get(f"{self.url}/api/v1/competitions", timeout=5)
                    return
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        tail = self._tail()
        self.stop()
        raise RuntimeError(f"the embedded server did not start within {timeout} s: {tail}")

    def _tail(self) -> str:
        """The end of the server's log, on one line."""
        if self._last_words is not None:
            return self._last_words
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        lines = [line for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server and remove its database (idempotent)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        self.remove_workdir()


def _stop_when_parent_exits() -> None:
    """Wait for EOF on stdin (the kernel went away), then stop this process politely."""
    try:
        while os.read(0, 1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Run the server until stopped, or until the kernel that started it exits."""
    from crowdsource.server.app import main as serve

    threading.Thread(target=_stop_when_parent_exits, daemon=True).start()
    workdir = Path.cwd()
    try:
        return serve(argv)
    finally:
        if workdir.name.startswith(WORKDIR_PREFIX):
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
