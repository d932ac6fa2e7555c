"""The `crowdsource` command: `serve` the API, and client commands for people and scripts."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from crowdsource.client import Client, Competition, CrowdsourceError
from crowdsource.client.config import glue_option_values
from crowdsource.client.models import competitions_frame
from crowdsource.frames import read_frame_file, write_frame_file
from crowdsource.times import parse_duration

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Client], int]

EPILOG = """\
The server URL comes from --url, else CROWDSOURCE_URL, else http://127.0.0.1:8889.
The token comes from --token, else CROWDSOURCE_TOKEN, else the credentials file that
`crowdsource register` writes for that server (under $CROWDSOURCE_CONFIG_DIR or
~/.config/crowdsource). Run `crowdsource COMMAND --help` for a command's options.
"""


def _print(text: str) -> None:
    """Print to stdout."""
    print(text, flush=True)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """JSON for scripts with --json, else the text for people."""
    _print(json.dumps(data, indent=2, default=str) if args.json else text)


LIST_COLUMNS = ("id", "title", "type", "metric", "status", "rows", "closes_at", "host")


def _table(frame: pd.DataFrame, empty: str) -> str:
    """A frame as an aligned text table."""
    return empty if frame.empty else frame.to_string(index=False)


def _describe(competition: Competition) -> str:
    """A competition as `key: value` lines."""
    data = competition.to_dict()
    data["host"] = competition.host_name
    width = max(len(k) for k in data)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in data.items())


def _when(value: str | None) -> str | timedelta | None:
    """An ISO time, or a duration from now such as `+30m`, `2h`, `7d`."""
    if not value:
        return None
    duration = parse_duration(value)
    return value if duration is None else duration


# -- command handlers ------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace, client: Client) -> int:
    """Register a participant and save its token."""
    data = client.register(args.name, save=not args.no_save)
    where = data.get("credentials_file")
    text = f"registered {data['name']} (id {data['id']})"
    text += f"; token saved to {where}" if where else f"; token: {data['token']}"
    _emit(args, data, text)
    return 0


def cmd_whoami(args: argparse.Namespace, client: Client) -> int:
    """Show who the token belongs to."""
    data = client.me()
    _emit(args, data, f"{data['name']} (id {data['id']}) on {client.url}")
    return 0


def cmd_users(args: argparse.Namespace, client: Client) -> int:
    """List participants."""
    frame = client.users()
    _emit(args, frame.to_dict("records"), _table(frame, "no participants"))
    return 0


def cmd_competitions(args: argparse.Namespace, client: Client) -> int:
    """List competitions."""
    items = client.competitions(type=args.type, status=args.status)
    data = [c.to_dict() for c in items]
    _emit(
        args,
        data,
        _table(
            competitions_frame(items, LIST_COLUMNS).fillna({"closes_at": "-"}), "no competitions"
        ),
    )
    return 0


def cmd_show(args: argparse.Namespace, client: Client) -> int:
    """Show one competition."""
    competition = client.competition(args.id)
    _emit(args, competition.to_dict(), _describe(competition))
    return 0


def cmd_leaderboard(args: argparse.Namespace, client: Client) -> int:
    """Show one competition's leaderboard."""
    frame = client.leaderboard(args.id, board=args.board)
    title = f"competition {args.id}, {args.board} board ({frame.attrs.get('metric')})"
    data = {**frame.attrs, "entries": frame.to_dict("records")}
    _emit(args, data, f"{title}\n{_table(frame, 'no entries yet')}")
    return 0


def cmd_leaderboards(args: argparse.Namespace, client: Client) -> int:
    """Show every competition's leaderboard."""
    frame = client.leaderboards()
    _emit(args, frame.to_dict("records"), _table(frame, "no leaderboard entries yet"))
    return 0


def cmd_submissions(args: argparse.Namespace, client: Client) -> int:
    """List your own submissions."""
    items = client.submissions(args.competition)
    columns = ["id", "competition_id", "state", "public_score", "rank", "created_at", "reason"]
    frame = pd.DataFrame([{k: getattr(s, k) for k in columns} for s in items], columns=columns)
    _emit(args, [s.to_dict() for s in items], _table(frame, "no submissions"))
    return 0


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    """Submit predictions from a CSV or Parquet file."""
    frame = read_frame_file(args.file)
    sub = client.submit(args.id, frame, wait=not args.no_wait)
    _emit(args, sub.to_dict(), str(sub))
    return 1 if sub.state == "failed" else 0


def cmd_check(args: argparse.Namespace, client: Client) -> int:
    """Check a predictions file as the server would, without submitting it."""
    rows = client.check(args.id, read_frame_file(args.file))
    data = {"competition_id": args.id, "path": args.file, "rows": rows, "ok": True}
    text = f"{args.file} fits competition {args.id}: {rows} rows checked; nothing was submitted"
    _emit(args, data, text)
    return 0


def cmd_host(args: argparse.Namespace, client: Client) -> int:
    """Create a competition from dataset (and answer) files."""
    competition = client.host(
        read_frame_file(args.dataset),
        read_frame_file(args.answer) if args.answer else None,
        type=args.type,
        title=args.title,
        description=args.description,
        metric=args.metric,
        targets=args.targets.split(",") if args.targets else None,
        id_column=args.id_column,
        opens_at=_when(args.opens_at),
        closes_at=_when(args.closes_at),
        daily_limit=args.daily_limit,
        public_fraction=args.public_fraction,
    )
    text = f"created competition {competition.id}: {competition.title} ({competition.status})"
    _emit(args, competition.to_dict(), text)
    return 0


def cmd_resolve(args: argparse.Namespace, client: Client) -> int:
    """Add or replace answer rows from a file."""
    data = client.resolve(args.id, read_frame_file(args.file))
    text = f"competition {args.id}: {data.get('answer_rows')} answer rows"
    _emit(args, data, text + f", {data.get('rescored')} submissions re-scored")
    return 0


def cmd_close(args: argparse.Namespace, client: Client) -> int:
    """Close a competition you host."""
    competition = client.close_competition(args.id)
    _emit(args, competition.to_dict(), f"competition {competition.id}: {competition.status}")
    return 0


def cmd_download(args: argparse.Namespace, client: Client) -> int:
    """Save a competition's dataset, template or answer to a CSV or Parquet file."""
    if args.answer:
        frame, what = client.answer(args.id), "answer"
    elif args.template:
        frame, what = client.competition(args.id).template(), "template"
    else:
        frame, what = client.dataset(args.id), "dataset"
    out = Path(args.output or f"competition-{args.id}-{what}.csv")
    write_frame_file(frame, out)
    data = {"competition_id": args.id, "what": what, "rows": len(frame), "path": str(out)}
    _emit(args, data, f"wrote {len(frame)} rows of competition {args.id}'s {what} to {out}")
    return 0


# -- parser ------------------------------------------------------------------------------------


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every client command takes (before or after the command name)."""
    parent = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    parent.add_argument("--url", default=default, help="server URL (default: $CROWDSOURCE_URL)")
    parent.add_argument("--token", default=default, help="API token (default: $CROWDSOURCE_TOKEN)")
    parent.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print JSON for scripts instead of tables",
    )
    return parent


def _command(
    subs: Any, name: str, handler: Handler, help: str, parent: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    """Add one subcommand wired to its handler."""
    parser = subs.add_parser(name, help=help, description=help, parents=[parent])
    parser.set_defaults(handler=handler)
    return parser


def _add_host(subs: Any, parent: argparse.ArgumentParser) -> None:
    """The `host` subcommand and its many options."""
    p = _command(subs, "host", cmd_host, "create a competition from files", parent)
    p.add_argument("--dataset", required=True, help="CSV/Parquet file participants see")
    p.add_argument("--answer", help="CSV/Parquet file of hidden answers (omit for later)")
    p.add_argument("--type", default="classify", help="classify, regress, predict or cluster")
    p.add_argument("--title", help="title (default: '<type> competition')")
    p.add_argument("--description", default="", help="description")
    p.add_argument("--metric", help="metric name (default depends on type)")
    p.add_argument("--targets", help="comma-separated target columns (default: answer columns)")
    p.add_argument("--id-column", default="id", help="the column that keys rows (default: id)")
    p.add_argument("--opens-at", help="ISO time or duration from now, e.g. +10m")
    p.add_argument("--closes-at", help="ISO time or duration from now, e.g. +2h, 7d")
    p.add_argument("--daily-limit", type=int, help="submissions per participant per UTC day")
    p.add_argument("--public-fraction", type=float, default=1.0, help="share of public rows")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="crowdsource",
        description="Run data-science competitions: a server and a command-line client.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs.add_parser("serve", help="run the server (see `crowdsource serve --help`)", add_help=False)
    parent = _common(suppress=True)
    p = _command(subs, "register", cmd_register, "register a participant, save its token", parent)
    p.add_argument("name", nargs="?", help="display name (default: generated)")
    p.add_argument("--no-save", action="store_true", help="print the token, do not save it")
    _command(subs, "whoami", cmd_whoami, "show who the token belongs to", parent)
    _command(subs, "users", cmd_users, "list participants", parent)
    p = _command(subs, "competitions", cmd_competitions, "list competitions", parent)
    p.add_argument("--type", help="only this type (classify, regress, predict, cluster)")
    p.add_argument("--status", help="only this status (open, upcoming, closed)")
    p = _command(subs, "show", cmd_show, "show one competition", parent)
    p.add_argument("id", type=int, help="competition id")
    p = _command(subs, "leaderboard", cmd_leaderboard, "show a competition's leaderboard", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("--board", default="public", choices=["public", "private"], help="which board")
    _command(subs, "leaderboards", cmd_leaderboards, "show every leaderboard", parent)
    p = _command(subs, "submissions", cmd_submissions, "list your submissions", parent)
    p.add_argument("--competition", type=int, help="only to this competition")
    p = _command(subs, "submit", cmd_submit, "submit predictions from CSV or Parquet", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("file", help="CSV or Parquet file with the id column and predictions")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the score")
    p = _command(subs, "check", cmd_check, "check predictions as the server would", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("file", help="CSV or Parquet file with the id column and predictions")
    _add_host(subs, parent)
    p = _command(subs, "resolve", cmd_resolve, "add or replace answer rows from a file", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("file", help="CSV or Parquet file with the id column and targets")
    p = _command(subs, "close", cmd_close, "close a competition you host", parent)
    p.add_argument("id", type=int, help="competition id")
    p = _command(subs, "download", cmd_download, "save a dataset to CSV or Parquet", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("-o", "--output", help="file to write (.csv or .parquet)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--template", action="store_true", help="ids with empty target columns")
    group.add_argument("--answer", action="store_true", help="the answer rows (host only)")
    return parser


def _serve(argv: list[str]) -> int:
    """Forward to the server's own command line."""
    try:
        from crowdsource.server.app import main as serve_main
    except ImportError as exc:
        print(f"crowdsource: error: the server is not available: {exc}", file=sys.stderr)
        return 1
    return int(serve_main(argv) or 0)


def _fail(message: str) -> int:
    """Print one error line; return the exit status."""
    print(f"crowdsource: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        return _serve(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(glue_option_values(args_list))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        client = Client(args.url, token=args.token)
        return int(args.handler(args, client))
    except CrowdsourceError as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
