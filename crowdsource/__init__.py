"""crowdsource: run data-science competitions inside Jupyter."""

from __future__ import annotations

from typing import Any

from crowdsource._version import __version__

__all__ = ["__version__", "compete", "load_ipython_extension", "unload_ipython_extension"]


NOTEBOOK_PARTS = ("IPython", "ipywidgets", "anywidget", "plotly")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext crowdsource`: register the `%crowdsource` magic."""
    from crowdsource.extras import MissingExtra, install_hint

    try:
        from crowdsource.notebook.magics import load_ipython_extension as load
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in NOTEBOOK_PARTS:
            raise
        raise MissingExtra(
            f"%load_ext crowdsource needs the {exc.name!r} package, which is not installed:"
            f" {install_hint('notebook')}",
            name=exc.name,
        ) from None
    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext crowdsource`: stop competing functions and live leaderboards."""
    from crowdsource.notebook.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt panel (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "crowdsource-jupyterlab"}]


def __getattr__(name: str) -> Any:
    """`from crowdsource import compete` imports the notebook layer only then."""
    if name == "compete":
        from crowdsource.notebook.compete import compete

        return compete
    raise AttributeError(f"module 'crowdsource' has no attribute {name!r}")
