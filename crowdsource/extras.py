"""Optional parts: importing one that is not installed names the pip command that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "install_hint", "require"]


class MissingExtra(ImportError):
    """An optional part of crowdsource is not installed; the message says how to install it."""


def install_hint(extra: str) -> str:
    """The pip command that installs one extra."""
    return f"pip install 'crowdsource[{extra}]'"


def require(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import `module`, or raise MissingExtra naming what needs it and the pip command."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top and top != module.split(".")[0]:
            raise  # something inside it is missing: not ours to explain
        raise MissingExtra(
            f"{needed_for} needs the {module!r} package, which is not installed:"
            f" {install_hint(extra)}",
            name=module,
        ) from None
