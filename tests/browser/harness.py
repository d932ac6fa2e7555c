"""Chromium, JupyterLab and recorded pages for the browser tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = (
    ROOT / "docs" / "img"
    if os.environ.get("CROWDSOURCE_SCREENSHOTS") == "docs"
    else ROOT / "tests" / "artifacts"
)
CHROMIUM = os.environ.get("CROWDSOURCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
EXTENSION_NAME = "crowdsource-jupyterlab"
PLUGIN_ID = f"{EXTENSION_NAME}:plugin"
LAB_TOKEN = uuid.uuid4().hex


class Page:
    """A new page that records dialogs and script errors."""

    def __init__(self, context: object) -> None:
        self.page = context.new_page()  # type: ignore[attr-defined]
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("console", self._on_console)

    def _on_console(self, message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            self.console_errors.append(message.text)  # type: ignore[attr-defined]

    def _on_dialog(self, dialog: object) -> None:
        self.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.page.close()


class Lab:
    """A real JupyterLab server with throwaway config, settings and workspaces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.settings_dir = root / "settings"
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir(exist_ok=True)
        self.env = dict(os.environ)
        dirs = {
            "JUPYTERLAB_SETTINGS_DIR": self.settings_dir,
            "JUPYTERLAB_WORKSPACES_DIR": root / "workspaces",
            "JUPYTER_CONFIG_DIR": root / "config",
            "JUPYTER_RUNTIME_DIR": root / "runtime",
            # The crowdsource credentials the identity extension reads: none, unless a test
            # registers into it (never the tester's own ~/.config/crowdsource).
            "CROWDSOURCE_CONFIG_DIR": root / "crowdsource",
        }
        for key, path in dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            self.env[key] = str(path)
        labconfig = root / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps(
                {
                    "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
                    "exposeAppInBrowser": True,
                }
            )
        )
        self._use_source_build()
        self._enable_server_extension()
        self.log = root / "lab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _use_source_build(self) -> None:
        """Prefer the extension built in this checkout (what a developer just built)."""
        built = ROOT / "crowdsource" / "labextension"
        if not (built / "package.json").exists():
            from jupyter_core.paths import jupyter_path

            installed = [Path(p) / EXTENSION_NAME for p in jupyter_path("labextensions")]
            if not any((p / "package.json").exists() for p in installed):
                raise RuntimeError(
                    f"the {EXTENSION_NAME} extension is neither built nor installed: "
                    "run `jlpm install && jlpm build` or `pip install -e .`"
                )
            return  # the installed copy (pip install .)
        data = self.root / "data"
        (data / "labextensions").mkdir(parents=True, exist_ok=True)
        (data / "labextensions" / EXTENSION_NAME).symlink_to(built, target_is_directory=True)
        paths = [str(data), self.env.get("JUPYTER_PATH", "")]
        self.env["JUPYTER_PATH"] = os.pathsep.join(p for p in paths if p)

    def _enable_server_extension(self) -> None:
        """Enable the identity extension through the config file the wheel ships (an editable
        install does not place it in the environment's etc/jupyter)."""
        paths = [str(ROOT / "jupyter-config"), self.env.get("JUPYTER_CONFIG_PATH", "")]
        self.env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in paths if p)

    @property
    def crowdsource_config(self) -> Path:
        """The folder `crowdsource register` saves credentials in for this JupyterLab."""
        return Path(self.env["CROWDSOURCE_CONFIG_DIR"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Lab:
        """Start on a free port; if another process takes it first, again on another."""
        for _ in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
            if self._start(timeout):
                return self
        raise RuntimeError(f"JupyterLab found no free port: {self.log.read_text()[-3000:]}")

    def _start(self, timeout: float) -> bool:
        """Start on self.port; False if that port was taken meanwhile."""
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={LAB_TOKEN}",
            f"--ServerApp.root_dir={self.notebooks}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text()
                if f"port {self.port} is already in use" in text:
                    return False
                raise RuntimeError(f"JupyterLab exited: {text[-3000:]}")
            try:
                r = requests.get(f"{self.url}/api/status?token={LAB_TOKEN}", timeout=1)
                if r.ok:
                    return True
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"JupyterLab did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def configure(self, server_url: str, token: str = "") -> None:
        """Write the panel's user settings, read by the next page load."""
        folder = self.settings_dir / EXTENSION_NAME
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plugin.jupyterlab-settings").write_text(
            json.dumps({"serverUrl": server_url, "token": token})
        )

    def page_url(self) -> str:
        """A fresh workspace each time, so no earlier layout is restored."""
        return f"{self.url}/lab/workspaces/t{uuid.uuid4().hex[:12]}?reset&token={LAB_TOKEN}"
