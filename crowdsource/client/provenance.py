"""Provenance: what a submission records about where it came from. The function's name and
code digest (the `fingerprint` of the idempotency keys, so an edited function is a new
version), its source only when the participant opts in (`share_source=True`), and the
client's, Python's and the main packages' versions. docs/provenance.md says why.

A shared source is made to run on its own: the function without its decorators, after the
imports and small constants it uses from its module, and the module's own functions it calls
(one level deep for each, as `crowdsource reproduce` needs them).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import inspect
import json
import platform
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Any

from crowdsource import __version__
from crowdsource.frames import PROVENANCE_KEY

__all__ = ["collect", "environment", "fingerprint", "function_source", "parquet_metadata"]

MAIN_PACKAGES = {"numpy": "numpy", "pandas": "pandas", "scikit-learn": "sklearn"}
LITERALS = (int, float, str, bytes, bool, type(None))
MAX_LITERAL = 200  # a constant longer than this as code is data, not part of the function


def fingerprint(fn: Callable[..., Any]) -> str:
    """The digest of a function's code that the idempotency keys use (see competitor.py)."""
    from crowdsource.client.competitor import fingerprint as digest

    return digest(fn) or "0" * 12


def collect(fn: Callable[..., Any], *, name: str, share_source: bool = False) -> dict[str, Any]:
    """The provenance of a submission made by `fn` (registered as `name`)."""
    source = function_source(fn) if share_source else None
    return {
        "function": {"name": name, "digest": fingerprint(fn), "source": source},
        **environment(_top_package(fn)),
    }


def parquet_metadata(provenance: dict[str, Any] | None) -> dict[bytes, bytes] | None:
    """The Parquet footer metadata that carries a provenance record to the server."""
    if provenance is None:
        return None
    return {PROVENANCE_KEY: json.dumps(provenance, separators=(",", ":")).encode()}


@functools.lru_cache(maxsize=64)
def environment(package: str | None = None) -> dict[str, Any]:
    """The client, Python and main package versions here (and `package`'s, if installed)."""
    packages = {dist: _version(dist) for dist in MAIN_PACKAGES}
    if package and package not in MAIN_PACKAGES.values():
        dist = _distribution(package)
        if dist is not None:
            packages[dist] = _version(dist)
    return {
        "client_version": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {k: v for k, v in packages.items() if v is not None},
    }


def _version(dist: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _distribution(package: str) -> str | None:
    """The installed distribution that provides a top-level import name, if any."""
    if _version(package) is not None:
        return package
    found = importlib.metadata.packages_distributions().get(package) or []
    return found[0] if found else None


def _top_package(fn: Callable[..., Any]) -> str | None:
    """The top-level package of the module that defines `fn` (None for a notebook's)."""
    module = getattr(fn, "__module__", None) or ""
    top = module.split(".", 1)[0]
    return None if not top or top in ("__main__", "builtins") else top


# ---------------------------------------------------------------- the shared source


def function_source(fn: Callable[..., Any]) -> str | None:
    """A script that defines `fn` on its own (None if its source cannot be read): the
    imports and small constants it and its module's functions that it calls use, those
    functions, then `fn`."""
    fn = inspect.unwrap(getattr(fn, "__wrapped__", fn))
    own = _definition(fn)
    if own is None:
        return None
    lines: set[str] = set()
    helpers: list[str] = []
    seen, todo = {fn}, [fn]
    while todo:
        for name, value in _globals_used(todo.pop(0)).items():
            line = _import_line(name, value)
            if line is not None:
                lines.add(line)
            elif isinstance(value, LITERALS) and len(repr(value)) <= MAX_LITERAL:
                lines.add(f"{name} = {value!r}")
            elif _own_function(value, fn) and value not in seen:
                seen.add(value)
                todo.append(value)
                helper = _definition(value)
                if helper is not None:
                    helpers.append(helper)
    # annotations stay unevaluated: names only they use are not imported
    ordered = sorted(lines, key=lambda line: (not line.startswith(("import ", "from ")), line))
    head = "\n".join(["from __future__ import annotations", "", *ordered])
    parts = [head, *helpers, own]
    return "\n\n\n".join(p for p in parts if p).rstrip() + "\n"


def _own_function(value: Any, fn: Callable[..., Any]) -> bool:
    """Whether `value` is a function of `fn`'s own module (a notebook's, say)."""
    return isinstance(value, types.FunctionType) and value.__module__ == fn.__module__


def _definition(fn: Callable[..., Any]) -> str | None:
    """A function's own source without its decorators (which would run again), dedented."""
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    try:
        node = ast.parse(text).body[0]
    except (SyntaxError, IndexError):
        return None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None  # a lambda: there is no statement that defines it
    return "\n".join(text.splitlines()[node.lineno - 1 :]).rstrip()


def _globals_used(fn: Callable[..., Any]) -> dict[str, Any]:
    """The module-level names a function's code (and its nested code) reads."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    scope = getattr(fn, "__globals__", {})
    return {n: scope[n] for n in sorted(names) if n in scope}


def _import_line(name: str, value: Any) -> str | None:
    """The import statement that binds `name` to `value`, when it comes from a module."""
    if isinstance(value, types.ModuleType):
        title = value.__name__
        return f"import {title}" if title == name else f"import {title} as {name}"
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "." in qualname:
        return None
    if not _is_importable(module):
        return None
    tail = "" if qualname == name else f" as {name}"
    return f"from {module} import {qualname}{tail}"


def _is_importable(module: str) -> bool:
    """Whether a module is a real one (an import in a fresh process finds it)."""
    if module.split(".", 1)[0] in sys.stdlib_module_names:
        return True
    found = sys.modules.get(module)
    return found is not None and getattr(found, "__file__", None) is not None
