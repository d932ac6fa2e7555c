"""A submission's provenance as a notebook shows it: a few lines, and the shared source."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["ProvenanceView", "provenance_view"]


class ProvenanceView:
    """Where a submission came from: text for a console, escaped HTML for a notebook."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def lines(self) -> list[tuple[str, str]]:
        """The facts worth reading, as (label, value) pairs."""
        data, record = self.data, self.data.get("provenance")
        head = [
            ("submission", f"{data['submission_id']} to competition {data['competition_id']}"),
            ("participant", str(data["participant"]["name"])),
        ]
        if record is None:
            return [*head, ("function", "none recorded (submitted as a frame)")]
        function = record["function"]
        packages = ", ".join(f"{k} {v}" for k, v in sorted(record["packages"].items()))
        shared = "shared" if function["source"] else "not shared"
        return [
            *head,
            ("function", f"{function['name']} (digest {function['digest']})"),
            ("source", shared),
            ("python", str(record["python"])),
            ("client", str(record["client_version"])),
            ("packages", packages or "none recorded"),
        ]

    @property
    def source(self) -> str | None:
        """The shared source, if any."""
        record = self.data.get("provenance") or {}
        return (record.get("function") or {}).get("source")

    def __repr__(self) -> str:
        width = max(len(k) for k, _ in self.lines())
        text = "\n".join(f"{k:<{width}}  {v}" for k, v in self.lines())
        return text + (f"\n\n{self.source}" if self.source else "")

    def _repr_html_(self) -> str:
        """A small table, then the source."""
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.lines()
        )
        code = f"<pre>{html.escape(self.source)}</pre>" if self.source else ""
        return f"<table>{rows}</table>{code}"


def provenance_view(data: dict[str, Any]) -> ProvenanceView:
    """The view of `Client.provenance(id)`'s answer."""
    return ProvenanceView(data)
