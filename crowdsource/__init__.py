"""crowdsource: run data-science competitions inside Jupyter."""

from crowdsource._version import __version__

__all__ = ["__version__"]
