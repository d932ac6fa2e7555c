"""`python -m crowdsource.protocol openapi|docs|check`: write, or check, what is generated from
the protocol (the JupyterLab build runs `openapi` before openapi-typescript)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crowdsource.protocol import docs, openapi

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
OPENAPI_JSON = ROOT / "extension" / "src" / "generated" / "openapi.json"
REGENERATE = "jlpm build:schema && python -m crowdsource.protocol docs"


def openapi_text() -> str:
    """The OpenAPI document as committed: sorted keys, two-space indent."""
    return json.dumps(openapi.document(), indent=2, sort_keys=True) + "\n"


def stale() -> list[str]:
    """The generated files that differ from what the protocol generates now."""
    out = []
    if OPENAPI_JSON.read_text() != openapi_text():
        out.append(str(OPENAPI_JSON.relative_to(ROOT)))
    text = API_DOC.read_text()
    if docs.render(text) != text:
        out.append(str(API_DOC.relative_to(ROOT)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command."""
    parser = argparse.ArgumentParser(prog="python -m crowdsource.protocol", description=__doc__)
    parser.add_argument("command", choices=["openapi", "docs", "check"])
    parser.add_argument("--output", type=Path, help="openapi: the file to write (else stdout)")
    args = parser.parse_args(argv)
    if args.command == "openapi" and args.output is None:
        sys.stdout.write(openapi_text())
    elif args.command == "openapi":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(openapi_text())
    elif args.command == "docs":
        API_DOC.write_text(docs.render(API_DOC.read_text()))
    else:
        found = stale()
        for path in found:
            print(f"{path} is stale: run `{REGENERATE}`", file=sys.stderr)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
