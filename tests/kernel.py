"""A real IPython kernel (jupyter_client) watched from its iopub channel as a browser would:
for the widget's kernel tests and the bench's first-leaderboard row."""

from __future__ import annotations

import time
from typing import Any


class Kernel:
    """A real IPython kernel and a client that keeps every message it sees."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env)
        self.messages: list[dict[str, Any]] = []

    def run(self, code: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Execute a cell; its output messages (raises on an error)."""
        msg_id = self.client.execute(code)
        outputs, deadline = [], time.monotonic() + timeout
        while True:
            message = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.messages.append(message)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "error":
                raise AssertionError("\n".join(message["content"]["traceback"]))
            if kind in ("execute_result", "stream", "display_data"):
                outputs.append(message)
            if kind == "status" and message["content"]["execution_state"] == "idle":
                return outputs

    def widget_state(self, until: Any, timeout: float = 30) -> dict[str, Any]:
        """The first widget state update (comm_msg "update") that passes `until`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.messages.append(message)
            data = message["content"].get("data", {})
            update = message["msg_type"] == "comm_msg" and data.get("method") == "update"
            if update and until(data["state"]):
                return dict(data["state"])
        raise AssertionError("no widget update passed the check in time")

    def stop(self) -> None:
        """Stop the kernel and its channels."""
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
