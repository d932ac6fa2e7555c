"""Progress bars (tqdm) for large uploads and downloads, only when someone is watching."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["PROGRESS_BYTES", "ProgressReader", "interactive", "iter_with_progress", "make_bar"]

PROGRESS_BYTES = 4 * 1024 * 1024


def interactive() -> bool:
    """True in a notebook kernel or when stderr is a terminal."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def make_bar(total: int, description: str) -> Any:
    """A byte-counting tqdm bar (notebook-aware)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description)


class ProgressReader(io.BytesIO):
    """An in-memory body that advances a progress bar as requests reads it."""

    def __init__(self, data: bytes, bar: Any) -> None:
        super().__init__(data)
        self._bar = bar

    def read(self, size: int | None = -1) -> bytes:
        """Read a chunk and count it."""
        chunk = super().read(size)
        self._bar.update(len(chunk))
        if not chunk:
            self._bar.close()
        return chunk


def iter_with_progress(chunks: Iterable[bytes], bar: Any) -> Iterator[bytes]:
    """Yield chunks while counting them on the bar; close it at the end."""
    try:
        for chunk in chunks:
            bar.update(len(chunk))
            yield chunk
    finally:
        bar.close()
