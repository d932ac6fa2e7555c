"""A missing optional part fails with the pip command that installs it, not a bare
ModuleNotFoundError. Each runs in a real process whose imports of that module are blocked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def without(module: str, code: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in a new process where importing `module` fails as if it were not
    installed (a meta-path finder in front of every other)."""
    blocker = textwrap.dedent(
        f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r} or name.startswith({module!r} + "."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-c", blocker + code, *argv]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


SERVE = "import sys\nfrom crowdsource.server.app import main\nsys.exit(main(sys.argv[1:]))"


def test_postgres_without_psycopg(tmp_path: Path) -> None:
    """A PostgreSQL --db without psycopg: one line with `pip install 'crowdsource[postgres]'`."""
    done = without(
        "psycopg", SERVE, "--db=postgresql+psycopg://127.0.0.1/test", "--port=0", cwd=tmp_path
    )
    assert done.returncode == 1
    assert "pip install 'crowdsource[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_dask_scoring_without_distributed(tmp_path: Path) -> None:
    """--scoring=dask without dask: one line with `pip install 'crowdsource[dask]'`."""
    done = without(
        "distributed", SERVE, f"--db={tmp_path / 'x.db'}", "--scoring=dask", cwd=tmp_path
    )
    assert done.returncode == 1
    assert "--scoring=dask needs the 'distributed' package" in done.stderr
    assert "pip install 'crowdsource[dask]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_load_ext_without_ipywidgets(tmp_path: Path) -> None:
    """`%load_ext crowdsource` with ipywidgets missing (an install from before it came with
    the base) names the command that fixes it."""
    module = "ipywidgets"
    code = textwrap.dedent(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        try:
            shell.extension_manager.load_extension("crowdsource")
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = without(module, code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"MissingExtra %load_ext crowdsource needs the {module!r} package" in done.stdout
    assert "pip install 'crowdsource[notebook]'" in done.stdout


def test_load_ext_with_the_base_install(tmp_path: Path) -> None:
    """With what `pip install crowdsource` brings, `%load_ext crowdsource` registers the magic."""
    code = textwrap.dedent(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "crowdsource")
        print("crowdsource" in shell.magics_manager.magics["line"])
        """
    )
    done = without("psycopg", code, cwd=tmp_path)
    assert done.stdout.strip() == "True", done.stderr
