"""The `crowdsource` command: `serve` the API, and client commands for people and scripts."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from crowdsource.client import Client, Competition, CrowdsourceError, Team
from crowdsource.client.config import glue_option_values
from crowdsource.client.models import competitions_frame
from crowdsource.frames import read_frame_file, write_frame_file
from crowdsource.times import parse_duration

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Client], int]

EPILOG = """\
The server URL comes from --url, else CROWDSOURCE_URL, else http://127.0.0.1:8889.
The token comes from --token, else CROWDSOURCE_TOKEN, else the current identity saved for
that server (under $CROWDSOURCE_CONFIG_DIR or ~/.config/crowdsource): `register` adds one,
`use NAME` switches, `whoami` shows them. Run `crowdsource COMMAND --help` for a command's
options. Times are UTC. With --json, results are JSON on stdout and an error is one JSON
object on stderr, {"error": {"code", "message", "status"}}, with exit status 1.
"""
SIGPIPE_EXIT = 141  # what a shell reports for a tool stopped by SIGPIPE (`... | head`)
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def _print(text: str) -> None:
    """Print to stdout."""
    print(text, flush=True)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """JSON for scripts with --json, else the text for people."""
    _print(json.dumps(data, indent=2, default=str) if args.json else text)


LIST_COLUMNS = ("id", "title", "type", "metric", "status", "rows", "closes_at", "host")


def _plain_time(value: Any) -> Any:
    """An ISO time as people read it, to the second (`2026-12-01 09:30:05`, UTC); else as is."""
    if isinstance(value, str) and TIME.match(value):
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return value


def _table(frame: pd.DataFrame, empty: str) -> str:
    """A frame as an aligned text table, times to the second."""
    if frame.empty:
        return empty
    return frame.map(_plain_time).to_string(index=False)


def _describe(competition: Competition) -> str:
    """A competition as `key: value` lines."""
    data = competition.to_dict()
    data["host"] = competition.host_name
    width = max(len(k) for k in data)
    return "\n".join(f"{key:<{width}}  {_plain_time(value)}" for key, value in data.items())


def _read(path: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; a file that cannot be read is a ValueError naming
    it and saying what is wrong, in words rather than the parser's."""
    try:
        return read_frame_file(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a CSV or Parquet file") from None
    except PermissionError:
        raise ValueError(f"{path}: not allowed to read it (check its permissions)") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty; a CSV needs a header row and data rows") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path}: {_csv_problem(str(exc))}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; save the CSV as UTF-8 or use .parquet") from None
    except Exception as exc:  # pyarrow's errors for a damaged Parquet file, among others
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable CSV or Parquet file ({reason})") from None


def _csv_problem(parser_message: str) -> str:
    """What pandas' tokenizer error means, in the terms of the file."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", parser_message)
    if found:
        want, line, saw = found.groups()
        return (
            f"line {line} has {saw} fields but the header row has {want};"
            " every row needs one value per column, separated by commas"
        )
    return "not a well-formed CSV file: " + parser_message.strip().splitlines()[0]


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
    """Show who the token belongs to, and the other identities saved for this server."""
    data = {**client.me(), "url": client.url, "identities": client.identities()}
    text = f"{data['name']} (id {data['id']}) on {client.url}"
    others = [i["name"] for i in data["identities"] if i["name"] != data["name"]]
    if others:
        text += f"\nalso saved: {', '.join(others)} (`crowdsource use NAME` switches)"
    _emit(args, data, text)
    return 0


def cmd_use(args: argparse.Namespace, client: Client) -> int:
    """Act as another saved identity from now on."""
    data = client.use(args.name)
    _emit(args, data, f"now {data['name']} (id {data['id']}) on {client.url}")
    return 0


def cmd_token_rotate(args: argparse.Namespace, client: Client) -> int:
    """Replace your token; the old one stops working at once."""
    data = client.rotate_token(save=not args.no_save)
    where = data.get("credentials_file")
    text = f"new token for {data['name']} (id {data['id']})"
    text += f" saved to {where}" if where else f": {data['token']}"
    _emit(args, data, text + "; the old token no longer works")
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
    if args.csv:  # the server's own export, for spreadsheets and `> board.csv`
        sys.stdout.write(client.leaderboard_csv(args.id, board=args.board))
        return 0
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
    """List your own submissions (with private scores once a competition has closed)."""
    items = client.submissions(args.competition)
    columns = ["id", "competition_id", "state", "public_score", "rank", "created_at", "reason"]
    if any(s.private_score is not None for s in items):
        columns.insert(columns.index("public_score") + 1, "private_score")
    frame = pd.DataFrame([{k: getattr(s, k) for k in columns} for s in items], columns=columns)
    _emit(args, [s.to_dict() for s in items], _table(frame, "no submissions"))
    return 0


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    """Submit predictions from a CSV or Parquet file."""
    frame = _read(args.file)
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
        _read(args.dataset),
        _read(args.answer) if args.answer else None,
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
        max_team_size=args.max_team_size,
        final_submissions=args.final_submissions,
        public_scoring=args.public_scoring,
        ladder_step=args.ladder_step,
    )
    text = f"created competition {competition.id}: {competition.title} ({competition.status})"
    _emit(args, competition.to_dict(), text)
    return 0


def cmd_resolve(args: argparse.Namespace, client: Client) -> int:
    """Add or replace answer rows from a file."""
    data = client.resolve(args.id, _read(args.file))
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


def _team_text(team: Team) -> str:
    """A team for people: name, members, and the code to share."""
    lines = [f"team {team.name!r} (id {team.id}) in competition {team.competition_id}"]
    size = f" of at most {team.max_team_size}" if team.max_team_size else ""
    lines.append(f"members ({len(team.members)}{size}): {', '.join(team.member_names)}")
    lines.append(f"join code: {team.code}")
    lines.append(f"others join with: crowdsource team join {team.competition_id} {team.code}")
    return "\n".join(lines)


def cmd_team_create(args: argparse.Namespace, client: Client) -> int:
    """Make a team in a competition and print the code to share."""
    team = client.create_team(competition=args.id, name=args.name)
    _emit(args, team.to_dict(), _team_text(team))
    return 0


def cmd_team_join(args: argparse.Namespace, client: Client) -> int:
    """Join a team with the code a member shared."""
    team = client.join_team(competition=args.id, code=args.code)
    _emit(args, team.to_dict(), _team_text(team))
    return 0


def cmd_team_show(args: argparse.Namespace, client: Client) -> int:
    """Show your team in a competition, with its code."""
    team = client.team(competition=args.id)
    _emit(args, team.to_dict(), _team_text(team))
    return 0


# -- final submissions and the host's tools ----------------------------------------------------


def cmd_final(args: argparse.Namespace, client: Client) -> int:
    """Show or select your final submissions to a competition."""
    if args.clear or args.submissions:
        data = client.select_final(args.id, submissions=args.submissions)
    else:
        data = client.final_submissions(args.id)
    how = "selected" if data["selected"] else "your best public ones, by default"
    ids = ", ".join(map(str, data["submissions"])) or "none yet"
    text = f"competition {args.id}: final submissions {ids} ({how}; at most {data['limit']})"
    _emit(args, data, text)
    return 0


def cmd_received(args: argparse.Namespace, client: Client) -> int:
    """List every submission to a competition you host."""
    items = client.submissions(args.id)
    columns = ["id", "state", "public_score", "private_score", "final", "created_at"]
    frame = pd.DataFrame(
        [
            {"participant": s.participant.get("name"), **{k: getattr(s, k) for k in columns}}
            for s in items
        ]
    )
    _emit(args, [s.to_dict() for s in items], _table(frame, "no submissions"))
    return 0


def cmd_edit(args: argparse.Namespace, client: Client) -> int:
    """Edit a competition you host."""
    changes: dict[str, Any] = {}
    for key in ("title", "description", "daily_limit"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.closes_at is not None:
        changes["closes_at"] = _when(args.closes_at)
    if args.no_close:
        changes["closes_at"] = None
    if args.no_daily_limit:
        changes["daily_limit"] = None
    if not changes:
        raise ValueError("say what to change: --title, --description, --closes-at or --daily-limit")
    competition = client.edit_competition(args.id, **changes)
    text = f"competition {competition.id}: {competition.title} ({competition.status})"
    _emit(args, competition.to_dict(), text + f", closes {competition.closes_at or 'never'}")
    return 0


def cmd_reopen(args: argparse.Namespace, client: Client) -> int:
    """Reopen a competition you host until a later close time."""
    competition = client.reopen(args.id, closes_at=_when(args.until))
    text = f"competition {competition.id}: {competition.status} until "
    _emit(args, competition.to_dict(), text + (competition.closes_at or "no close time"))
    return 0


def cmd_delete(args: argparse.Namespace, client: Client) -> int:
    """Delete a competition you host (archive it if anyone submitted)."""
    data = client.delete_competition(args.id)
    done = "deleted" if data["deleted"] else "archived (it has submissions; readable by id)"
    _emit(args, data, f"competition {args.id}: {done}")
    return 0


def cmd_disqualify(args: argparse.Namespace, client: Client) -> int:
    """Disqualify a participant from a competition you host."""
    who: int | str = int(args.participant) if args.participant.isdigit() else args.participant
    data = client.disqualify(args.id, participant=who, reason=args.reason)
    name = data["participant"]["name"]
    _emit(args, data, f"disqualified {name} from competition {args.id}: {data['reason']}")
    return 0


def cmd_disqualified(args: argparse.Namespace, client: Client) -> int:
    """List who is disqualified from a competition you host."""
    items = client.disqualified(args.id)
    frame = pd.DataFrame(
        [{"participant": d["participant"]["name"], "reason": d["reason"]} for d in items]
    )
    _emit(args, items, _table(frame, "nobody is disqualified"))
    return 0


def _add_host_tools(subs: Any, parent: argparse.ArgumentParser) -> None:
    """The subcommands for final submissions and the host's tools."""
    p = _command(subs, "final", cmd_final, "show or select your final submissions", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("submissions", type=int, nargs="*", help="submission ids to select")
    p.add_argument("--clear", action="store_true", help="go back to your best public ones")
    p = _command(subs, "received", cmd_received, "every submission to one you host", parent)
    p.add_argument("id", type=int, help="competition id")
    p = _command(subs, "edit", cmd_edit, "edit a competition you host", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("--title", help="new title")
    p.add_argument("--description", help="new description")
    p.add_argument("--closes-at", help="ISO time or duration from now, e.g. +2h (reopens)")
    p.add_argument("--no-close", action="store_true", help="never close")
    p.add_argument("--daily-limit", type=int, help="submissions per participant per UTC day")
    p.add_argument("--no-daily-limit", action="store_true", help="no daily limit")
    p = _command(subs, "reopen", cmd_reopen, "reopen a competition you host", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("--until", required=True, help="new close: ISO time or duration, e.g. 2d")
    p = _command(subs, "delete", cmd_delete, "delete (or archive) one you host", parent)
    p.add_argument("id", type=int, help="competition id")
    p = _command(subs, "disqualify", cmd_disqualify, "disqualify a participant", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("participant", help="participant id or name")
    p.add_argument("--reason", required=True, help="why (they see it when they submit)")
    p = _command(subs, "disqualified", cmd_disqualified, "who is disqualified, why", parent)
    p.add_argument("id", type=int, help="competition id")


# -- the crowd's ensemble -------------------------------------------------------------------------


def cmd_ensemble(args: argparse.Namespace, client: Client) -> int:
    """Show the crowd's ensemble of a competition you host: its score for each k."""
    found = client.ensemble(args.id, k=args.k)
    table = _table(found.scores, "no scored entries to blend yet")
    _emit(args, found.scores.to_dict(orient="records"), f"{table}\n{found.summary}")
    return 0


def _add_ensemble(subs: Any, parent: argparse.ArgumentParser) -> None:
    """The `ensemble` subcommand."""
    help = "the blend of the top k entries of one you host, scored for each k"
    p = _command(subs, "ensemble", cmd_ensemble, help, parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("--k", type=int, help="only the blend of the top K entries")


# -- standings, provenance, reproduce -------------------------------------------------------------


def cmd_standings(args: argparse.Namespace, client: Client) -> int:
    """Show functions (or participants) ranked across every round of a competition type."""
    from crowdsource.client.standings import standings_frame

    data = client.standings_data(type=args.type)
    of = "participants" if args.participants else "functions"
    frame = standings_frame(data, of=of)
    rounds = len(data["rounds"])
    title = f"{of} across {rounds} {args.type} rounds, by mean normalised rank (0 = best)"
    _emit(args, data, f"{title}\n{_table(frame, f'no {of} ranked yet')}")
    return 0


def cmd_provenance(args: argparse.Namespace, client: Client) -> int:
    """Show where a submission came from."""
    from crowdsource.notebook.provenance import provenance_view

    data = client.provenance(args.submission)
    _emit(args, data, repr(provenance_view(data)))
    return 0


def cmd_reproduce(args: argparse.Namespace, client: Client) -> int:
    """Run a submission's recorded function again; exit 1 unless it matches."""
    found = client.reproduce(args.submission, timeout=args.timeout)
    _emit(args, found.to_dict(), found.message)
    return 0 if found.matched else 1


def _add_standings(subs: Any, parent: argparse.ArgumentParser) -> None:
    """The `standings`, `provenance` and `reproduce` subcommands."""
    help = "functions ranked across every round of a type (docs/standings.md)"
    p = _command(subs, "standings", cmd_standings, help, parent)
    p.add_argument("type", help="competition type: classify, regress, predict or cluster")
    p.add_argument("--participants", action="store_true", help="rank participants instead")
    help = "where a submission came from (yours; as host, after close)"
    p = _command(subs, "provenance", cmd_provenance, help, parent)
    p.add_argument("submission", type=int, help="submission id")
    help = "run a submission's recorded function again and compare its predictions"
    p = _command(subs, "reproduce", cmd_reproduce, help, parent)
    p.add_argument("submission", type=int, help="submission id (its source was shared)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds it may run (600)")


# -- parser ------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are JSON on stderr when the command line asks for --json."""

    json_errors: ClassVar[bool] = False  # set by main() before parsing: subparsers share it

    def error(self, message: str) -> Any:
        """Exit 2 with the usage error, as JSON with --json."""
        if self.json_errors:
            error = {"code": "usage", "message": f"{self.prog}: {message}", "status": None}
            print(json.dumps({"error": error}), file=sys.stderr, flush=True)
            self.exit(2)
        super().error(message)


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every client command takes (before or after the command name)."""
    parent = Parser(add_help=False)
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
    p.add_argument(
        "--final-submissions", type=int, default=2, help="final submissions each (default 2)"
    )
    p.add_argument("--max-team-size", type=int, default=5, help="members per team (default 5)")
    p.add_argument(
        "--public-scoring",
        choices=("plain", "ladder"),
        default="plain",
        help="the public board: plain, or the Ladder (docs/ladder.md)",
    )
    p.add_argument("--ladder-step", type=float, default=0.01, help="the Ladder's step (0.01)")


def _add_team(subs: Any, parent: argparse.ArgumentParser) -> None:
    """The `team` subcommand and its own subcommands: create, join, show."""
    team = subs.add_parser(
        "team",
        help="make, join or show your team in a competition",
        description="Teams: one board entry and one daily quota for their members.",
    )
    actions = team.add_subparsers(dest="team_command", metavar="ACTION", required=True)
    p = _command(actions, "create", cmd_team_create, "make a team; prints its join code", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("name", help="the team's name, shown on the leaderboard")
    p = _command(actions, "join", cmd_team_join, "join a team with its code", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("code", help="the join code a team member shared")
    p = _command(actions, "show", cmd_team_show, "show your team and its join code", parent)
    p.add_argument("id", type=int, help="competition id")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(
        prog="crowdsource",
        description="Run data-science competitions: a server and a command-line client.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs.add_parser("serve", help="run the server (see `crowdsource serve --help`)", add_help=False)
    subs.add_parser(
        "db", help="migrate the server's database (see `crowdsource db --help`)", add_help=False
    )
    parent = _common(suppress=True)
    p = _command(subs, "register", cmd_register, "register a participant, save its token", parent)
    p.add_argument("name", nargs="?", help="display name (default: generated)")
    p.add_argument("--no-save", action="store_true", help="print the token, do not save it")
    _command(subs, "whoami", cmd_whoami, "show who you are and the saved identities", parent)
    p = _command(subs, "use", cmd_use, "act as another saved identity on this server", parent)
    p.add_argument("name", help="a name registered (and saved) on this server")
    token = subs.add_parser("token", help="manage your token", description="manage your token")
    token_subs = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    rotate = "replace your token (the old one stops working)"
    p = _command(token_subs, "rotate", cmd_token_rotate, rotate, parent)
    p.add_argument("--no-save", action="store_true", help="print the new token, do not save it")
    _command(subs, "users", cmd_users, "list participants", parent)
    p = _command(subs, "competitions", cmd_competitions, "list competitions", parent)
    p.add_argument("--type", help="only this type (classify, regress, predict, cluster)")
    p.add_argument("--status", help="only this status (open, upcoming, closed)")
    p = _command(subs, "show", cmd_show, "show one competition", parent)
    p.add_argument("id", type=int, help="competition id")
    p = _command(subs, "leaderboard", cmd_leaderboard, "show a competition's leaderboard", parent)
    p.add_argument("id", type=int, help="competition id")
    p.add_argument("--board", default="public", choices=["public", "private"], help="which board")
    p.add_argument("--csv", action="store_true", help="print the board as CSV")
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
    _add_team(subs, parent)
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
    _add_host_tools(subs, parent)
    _add_ensemble(subs, parent)
    _add_standings(subs, parent)
    return parser


def _serve(argv: list[str]) -> int:
    """Forward to the server's own command line."""
    try:
        from crowdsource.server.app import main as serve_main
    except ImportError as exc:
        print(f"crowdsource: error: the server is not available: {exc}", file=sys.stderr)
        return 1
    return int(serve_main(argv) or 0)


def db_parser() -> argparse.ArgumentParser:
    """The parser of `crowdsource db`."""
    parser = argparse.ArgumentParser(
        prog="crowdsource db",
        description=(
            "Migrate the server's database as a step of its own (then start the servers with "
            "--no-migrate). Servers that migrate at start take the same lock, so this is safe "
            "while they start."
        ),
    )
    subs = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("upgrade", "create or upgrade the schema to the newest revision"),
        ("current", "show the schema's revision; exit 1 if it is not the newest"),
    ):
        p = subs.add_parser(name, help=text, description=text)
        p.add_argument(
            "--db",
            default=os.environ.get("CROWDSOURCE_DB", "crowdsource.db"),
            help="SQLite file or SQLAlchemy URL (default: $CROWDSOURCE_DB, else crowdsource.db)",
        )
    return parser


def _db(argv: list[str]) -> int:
    """`crowdsource db upgrade|current`."""
    args = db_parser().parse_args(argv)
    try:
        from crowdsource.server.storage.engine import database_url, unavailable
        from crowdsource.server.storage.store import schema_revision, upgrade_schema
    except ImportError as exc:
        return _db_fail(f"the server is not available: {exc}")
    try:
        if args.action == "upgrade":
            before, after = upgrade_schema(args.db)
            _print(
                f"schema at revision {after}"
                + ("" if before == after else f" (was {before or 'none'})")
            )
            return 0
        current, newest = schema_revision(args.db)
    except Exception as exc:
        if not unavailable(exc):
            raise
        first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
        return _db_fail(f"cannot reach the database {database_url(args.db)}: {first}")
    if current == newest:
        _print(f"schema at revision {current} (the newest)")
        return 0
    _print(
        f"schema at revision {current or 'none'}; the newest is {newest}: "
        "run `crowdsource db upgrade`"
    )
    return 1


def _db_fail(message: str) -> int:
    """Print one error line; return the exit status."""
    print(f"crowdsource: error: {message}", file=sys.stderr)
    return 1


# What the API's messages point to, as the command line says it.
API_HINTS = (
    (re.compile(r"list them at /api/v1/competitions\b"), "`crowdsource competitions` lists them"),
)


def _message(exc: BaseException) -> str:
    """An error's message, with hints about the API turned into commands."""
    text = str(exc)
    for pattern, replacement in API_HINTS:
        text = pattern.sub(replacement, text)
    return text


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    """Report an error on stderr (one line, or one JSON object with --json); exit status 1."""
    if isinstance(exc, CrowdsourceError):
        code, status, line = exc.code, exc.status, f"{type(exc).__name__}: {_message(exc)}"
    else:
        code, status, line = "error", None, _message(exc)
    if getattr(args, "json", False):
        error = {"code": code, "message": _message(exc), "status": status}
        print(json.dumps({"error": error}), file=sys.stderr, flush=True)
    else:
        print(f"crowdsource: error: {line}", file=sys.stderr, flush=True)
    return 1


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader left (`| head`), and Python's flush at exit must
    not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        return _serve(args_list[1:])
    if args_list[:1] == ["db"]:
        return _db(args_list[1:])
    parser = build_parser()
    Parser.json_errors = "--json" in args_list
    args = parser.parse_args(glue_option_values(args_list))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        client = Client(args.url, token=args.token)
        return int(args.handler(args, client))
    except BrokenPipeError:
        _quiet_stdout()
        return SIGPIPE_EXIT
    except (CrowdsourceError, OSError, ValueError) as exc:
        return _fail(args, exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
