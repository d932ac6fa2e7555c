"""`%load_ext crowdsource` and the `%crowdsource SUBCOMMAND ...` line magic.

Every subcommand has its own arguments (IPython magic_arguments) and `--help`. A user's
mistake raises `UsageError` with one line saying what to type instead: IPython shows it
without a traceback.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from crowdsource.client import Client, InvalidSubmission, UnknownIdentity
from crowdsource.client.config import glue_option_values, load_identities
from crowdsource.notebook import compete as competing
from crowdsource.notebook import session
from crowdsource.notebook.display import SubmissionReport, competition_details, competitions_frame
from crowdsource.notebook.embedded import PREFERRED_PORT, EmbeddedServer, port_is_free

__all__ = ["CrowdsourceMagics", "load_ipython_extension", "unload_ipython_extension"]

Handler = Callable[["CrowdsourceMagics", Any], Any]
HELP = argument("-h", "--help", action="store_true", help="show this help and exit")


class Text(str):
    """A line of text that a notebook shows without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _namespace(magics: CrowdsourceMagics) -> dict[str, Any]:
    """The notebook's variables."""
    shell = magics.shell
    return shell.user_ns if shell is not None else {}


# -- subcommands: connection and identity --------------------------------------------------------


@magic_arguments(name="crowdsource connect")
@HELP
@argument("url", nargs="?", help="server URL, e.g. 127.0.0.1:8889 (default: $CROWDSOURCE_URL)")
@argument("--token", help="your API token (default: $CROWDSOURCE_TOKEN or the saved one)")
def cmd_connect(self: CrowdsourceMagics, args: Any) -> Text:
    """Connect this notebook to a crowdsource server."""
    client = session.connect(args.url, token=args.token)
    if not client.token:
        stale = session.state().connect_note
        note = f" ({stale})" if stale else ""
        return Text(
            f"connected to {client.url}{note} (anonymous: `%crowdsource register NAME` to join)"
        )
    name = (client.participant or {}).get("name")
    return Text(f"connected to {client.url} as {name!r}")


@magic_arguments(name="crowdsource register")
@HELP
@argument("name", help="your display name on the server")
@argument("--no-save", action="store_true", help="keep the token in this kernel only")
def cmd_register(self: CrowdsourceMagics, args: Any) -> Text:
    """Join the connected server as a new participant; the notebook then acts as them.

    An identity saved before stays saved: `%crowdsource use NAME` returns to it."""
    url = session.client().url
    server = session.state().server
    embedded = server is not None and server.url == url
    save = not (args.no_save or embedded)
    name = args.name.strip()
    if name in session.kept_identities(url) or (save and name in load_identities(url).identities):
        raise UsageError(_already_registered(name, url))
    client = Client(url, progress=False)
    try:
        with session.usage_errors():
            data = client.register(args.name, save=save)
    except UsageError as exc:
        raise UsageError(f"{exc}: choose another name") from None
    if not save:
        session.keep_identity(client)
    session.use(client)
    where = f"token saved to {data['credentials_file']}" if save else "token kept in this kernel"
    return Text(f"registered as {data['name']!r} (participant {data['id']}); {where}")


def _already_registered(name: str, url: str) -> str:
    """What to do about registering a name this notebook already holds a token for."""
    return (
        f"{name!r} is already registered on {url} and its token is kept:"
        f" `%crowdsource use {name}` acts as them; register another name for a new participant"
    )


@magic_arguments(name="crowdsource use")
@HELP
@argument("name", help="an identity registered (and saved, or kept in this kernel) here")
def cmd_use(self: CrowdsourceMagics, args: Any) -> Text:
    """Act as another identity on the connected server (as `crowdsource use NAME` does)."""
    url = session.client().url
    kept = session.kept_identities(url)
    if args.name in kept:
        client = Client(url, token=kept[args.name], progress=False)
        client.participant = {"name": args.name}
    else:
        client = Client(url, progress=False)
        try:
            client.use(args.name)
        except UnknownIdentity as exc:
            message = str(exc).replace("`crowdsource register", "`%crowdsource register")
            raise UsageError(" ".join(message.split())) from None
    with session.usage_errors():
        client.me()
    session.use(client)
    return Text(f"now acting as {args.name!r} on {url}")


@magic_arguments(name="crowdsource serve")
@HELP
@argument(
    "--port", type=int, default=None, help=f"port to listen on (default: {PREFERRED_PORT} if free)"
)
@argument("--as", dest="name", default="host", help="participant to connect as (default: host)")
@argument("--stop", action="store_true", help="stop the embedded server")
def cmd_serve(self: CrowdsourceMagics, args: Any) -> Text:
    """Start a real crowdsource server inside this kernel, on a temporary database; connect."""
    current = session.state()
    if args.stop:
        return _stop_server()
    if current.server is not None and current.server.running:
        raise UsageError(
            f"a server already runs in this kernel at {current.server.url}:"
            " `%crowdsource serve --stop` first to start a new one"
        )
    port = args.port
    if port is None:
        port = PREFERRED_PORT if port_is_free(PREFERRED_PORT) else 0
    try:
        server = EmbeddedServer(port=port).start()
    except RuntimeError as exc:
        if args.port is not None or "in use" not in str(exc):
            raise UsageError(f"{exc}; try another --port") from None
        server = EmbeddedServer(port=0).start()  # taken since we looked: any free port
    current.server = server
    client = Client(server.url, progress=False)  # a token saved for this URL is not for it
    with session.usage_errors():
        client.register(args.name, save=False)
    session.keep_identity(client)
    session.use(client)
    text = f"crowdsource server at {server.url} (temporary database); connected as {args.name!r}"
    if server.port != PREFERRED_PORT:
        address = server.url.removeprefix("http://")
        text += (
            f"\nport {PREFERRED_PORT} is taken, so it listens on {server.port}:"
            f" other notebooks join with `%crowdsource connect {address}`"
        )
    return Text(text)


def _stop_server() -> Text:
    """Stop the embedded server and forget the connection to it."""
    current = session.state()
    server, current.server = current.server, None
    if server is None:
        raise UsageError("no server runs in this kernel: `%crowdsource serve` starts one")
    competing.stop()
    if current.client is not None and current.client.url == server.url:
        current.client = None
    current.kept.pop(server.url, None)  # the next server there has other participants
    server.stop()
    return Text(f"stopped the server at {server.url}")


# -- subcommands: looking ------------------------------------------------------------------------


@magic_arguments(name="crowdsource competitions")
@HELP
@argument("--type", choices=competing.TYPES, help="only competitions of this type")
@argument("--status", choices=("open", "upcoming", "closed"), help="only in this state")
def cmd_competitions(self: CrowdsourceMagics, args: Any) -> Any:
    """List the server's competitions, newest first."""
    client = session.client()
    with session.usage_errors():
        items = client.competitions(type=args.type, status=args.status)
    return competitions_frame(items)


@magic_arguments(name="crowdsource show")
@HELP
@argument("id", type=int, help="competition id")
@argument("--rows", type=int, default=5, help="dataset rows to preview (default 5)")
def cmd_show(self: CrowdsourceMagics, args: Any) -> Any:
    """Show a competition's details, and return a preview of its dataset."""
    from IPython.display import display

    found = session.competition(args.id)
    with session.usage_errors(competition=args.id):
        preview = found.dataset.head(args.rows)
    display(competition_details(found).to_frame())
    return preview


@magic_arguments(name="crowdsource leaderboard")
@HELP
@argument("id", type=int, help="competition id")
@argument("--static", action="store_true", help="show the board once, without live updates")
def cmd_leaderboard(self: CrowdsourceMagics, args: Any) -> Any:
    """A live leaderboard figure for a competition."""
    from crowdsource.notebook.leaderboard import LeaderboardWidget

    return LeaderboardWidget(args.id, client=session.client(), live=not args.static)


@magic_arguments(name="crowdsource browse")
@HELP
def cmd_browse(self: CrowdsourceMagics, args: Any) -> Any:
    """A browser of competitions: details, dataset preview, template, submission."""
    from crowdsource.notebook.browser import CompetitionBrowser

    return CompetitionBrowser(client=session.client(), namespace=_namespace(self))


# -- subcommands: taking part --------------------------------------------------------------------


@magic_arguments(name="crowdsource submit")
@HELP
@argument("id", type=int, help="competition id")
@argument("var", help="name of the DataFrame variable holding your predictions")
def cmd_submit(self: CrowdsourceMagics, args: Any) -> SubmissionReport:
    """Submit a DataFrame of predictions; show its score, rank and remaining quota."""
    client = session.identified_client()
    frame = session.namespace_frame(_namespace(self), args.var)
    session.competition(args.id)
    with session.usage_errors(competition=args.id):
        try:
            submission = client.submit(args.id, frame)
        except InvalidSubmission as exc:
            message = " ".join(str(exc).split())
            raise UsageError(
                f"{args.var!r} does not fit competition {args.id}: {message}"
            ) from None
    return SubmissionReport(submission)


@magic_arguments(name="crowdsource check")
@HELP
@argument("id", type=int, help="competition id")
@argument("var", help="name of the DataFrame variable holding your predictions")
def cmd_check(self: CrowdsourceMagics, args: Any) -> Text:
    """Check a DataFrame of predictions as the server would, without submitting it."""
    frame = session.namespace_frame(_namespace(self), args.var)
    found = session.competition(args.id)
    with session.usage_errors(competition=args.id):
        try:
            rows = found.check(frame)
        except InvalidSubmission as exc:
            message = " ".join(str(exc).split())
            raise UsageError(
                f"{args.var!r} does not fit competition {args.id}: {message}"
            ) from None
    return Text(f"{args.var!r} fits competition {args.id}: {rows} rows checked; nothing was sent")


@magic_arguments(name="crowdsource runs")
@HELP
def cmd_runs(self: CrowdsourceMagics, args: Any) -> Any:
    """The functions competing in this kernel (`@compete`), with their last outcome."""
    return competing.running()


@magic_arguments(name="crowdsource stop")
@HELP
@argument("name", nargs="?", help="the competing function to stop (default: every one)")
def cmd_stop(self: CrowdsourceMagics, args: Any) -> Text:
    """Stop competing functions (and, without a name, every live leaderboard too)."""
    stopped = competing.stop(args.name)
    if args.name is None:
        from crowdsource.notebook.leaderboard import stop_all

        stop_all()
        return Text(f"stopped {len(stopped)} competing functions and every live leaderboard")
    return Text(f"stopped {args.name!r}")


# -- subcommands: hosting ------------------------------------------------------------------------


@magic_arguments(name="crowdsource host")
@HELP
@argument("dataset", help="DataFrame variable: what participants see (with the id column)")
@argument("answer", nargs="?", help="DataFrame variable: the hidden answer (omit for predict)")
@argument("--type", default="classify", choices=competing.TYPES, help="default: classify")
@argument("--title", help="default: the dataset variable's name")
@argument("--description", default="", help="what the competition is about")
@argument("--metric", help="default by type: logloss, rmse, rmse, adjusted_rand")
@argument("--targets", help="target columns, comma-separated (default: the answer's columns)")
@argument("--id-column", default="id", help="the column keying every row (default: id)")
@argument("--closes-at", help="closing time, ISO 8601 UTC (default: never)")
@argument("--daily-limit", type=int, help="submissions per participant per day")
@argument("--public-fraction", type=float, default=1.0, help="share of rows on the public board")
@argument("--final-submissions", type=int, default=2, help="final submissions each (default 2)")
@argument("--max-team-size", type=int, default=5, help="members per team (default 5)")
@argument("--public-scoring", choices=("plain", "ladder"), default="plain", help="the public board")
@argument("--ladder-step", type=float, default=0.01, help="the Ladder's step (default 0.01)")
def cmd_host(self: CrowdsourceMagics, args: Any) -> session.NotebookCompetition:
    """Create a competition from DataFrame variables; returns it."""
    client = session.identified_client()
    namespace = _namespace(self)
    dataset = session.namespace_frame(namespace, args.dataset)
    answer = session.namespace_frame(namespace, args.answer) if args.answer else None
    if answer is None and args.type != "predict" and not args.targets:
        raise UsageError(
            f"give the answer too: `%crowdsource host {args.dataset} ANSWER`"
            " (only --type predict may start without one, with --targets)"
        )
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    with session.usage_errors():
        created = client.host(
            dataset,
            answer,
            type=args.type,
            title=args.title or args.dataset,
            description=args.description,
            metric=args.metric,
            targets=targets,
            id_column=args.id_column,
            closes_at=args.closes_at,
            daily_limit=args.daily_limit,
            public_fraction=args.public_fraction,
            final_submissions=args.final_submissions,
            max_team_size=args.max_team_size,
            public_scoring=args.public_scoring,
            ladder_step=args.ladder_step,
        )
    return session.NotebookCompetition.wrap(created)


@magic_arguments(name="crowdsource resolve")
@HELP
@argument("id", type=int, help="competition id (one you host)")
@argument("var", help="DataFrame variable with answer rows (id column and targets)")
def cmd_resolve(self: CrowdsourceMagics, args: Any) -> Text:
    """Add or replace answer rows; every affected submission is re-scored."""
    client = session.identified_client()
    rows = session.namespace_frame(_namespace(self), args.var)
    session.competition(args.id)
    with session.usage_errors(competition=args.id):
        data = client.resolve(args.id, rows)
    return Text(
        f"competition {args.id}: {data.get('answer_rows')} answer rows known;"
        f" {data.get('rescored')} submissions re-scored"
    )


@magic_arguments(name="crowdsource close")
@HELP
@argument("id", type=int, help="competition id (one you host)")
def cmd_close(self: CrowdsourceMagics, args: Any) -> session.NotebookCompetition:
    """Close a competition you host, now (the private board is then shown)."""
    client = session.identified_client()
    with session.usage_errors(competition=args.id):
        return session.NotebookCompetition.wrap(client.close_competition(args.id))


# -- subcommands: final submissions and the host's tools ----------------------------------------


@magic_arguments(name="crowdsource final")
@HELP
@argument("id", type=int, help="competition id")
@argument("submissions", type=int, nargs="*", help="submission ids to select as final")
@argument("--clear", action="store_true", help="go back to your best public submissions")
def cmd_final(self: CrowdsourceMagics, args: Any) -> Text:
    """Show or select your final submissions (the ones the private board ranks)."""
    client = session.identified_client()
    with session.usage_errors(competition=args.id):
        if args.clear or args.submissions:
            data = client.select_final(args.id, submissions=args.submissions)
        else:
            data = client.final_submissions(args.id)
    how = "selected" if data["selected"] else "your best public ones, by default"
    ids = ", ".join(map(str, data["submissions"])) or "none yet"
    return Text(f"competition {args.id}: final submissions {ids} ({how}; at most {data['limit']})")


@magic_arguments(name="crowdsource received")
@HELP
@argument("id", type=int, help="competition id (one you host)")
def cmd_received(self: CrowdsourceMagics, args: Any) -> Any:
    """Every submission to a competition you host, as a DataFrame."""
    import pandas as pd

    client = session.identified_client()
    with session.usage_errors(competition=args.id):
        items = client.submissions(args.id)
    columns = ["id", "state", "public_score", "private_score", "final", "created_at"]
    return pd.DataFrame(
        [
            {"participant": s.participant.get("name"), **{k: getattr(s, k) for k in columns}}
            for s in items
        ],
        columns=["participant", *columns],
    )


@magic_arguments(name="crowdsource board")
@HELP
@argument("id", type=int, help="competition id")
@argument("--board", default="public", choices=("public", "private"), help="which board")
@argument("--csv", help="also write the board to this CSV file")
def cmd_board(self: CrowdsourceMagics, args: Any) -> Any:
    """A leaderboard as a DataFrame (and, with --csv, a file)."""
    client = session.client()
    with session.usage_errors(competition=args.id):
        frame = client.leaderboard(args.id, board=args.board)
        if args.csv:
            with open(args.csv, "w", encoding="utf-8") as out:
                out.write(client.leaderboard_csv(args.id, board=args.board))
    return frame


@magic_arguments(name="crowdsource edit")
@HELP
@argument("id", type=int, help="competition id (one you host)")
@argument("--title", help="new title")
@argument("--description", help="new description")
@argument("--closes-at", help="new closing time, ISO 8601 UTC (a later one reopens)")
@argument("--daily-limit", type=int, help="submissions per participant per day")
def cmd_edit(self: CrowdsourceMagics, args: Any) -> session.NotebookCompetition:
    """Edit a competition you host; a later close time reopens it."""
    client = session.identified_client()
    fields = ("title", "description", "closes_at", "daily_limit")
    changes = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if not changes:
        raise UsageError("say what to change: --title, --description, --closes-at, --daily-limit")
    with session.usage_errors(competition=args.id):
        return session.NotebookCompetition.wrap(client.edit_competition(args.id, **changes))


@magic_arguments(name="crowdsource delete")
@HELP
@argument("id", type=int, help="competition id (one you host)")
def cmd_delete(self: CrowdsourceMagics, args: Any) -> Text:
    """Delete a competition you host (archived instead if anyone submitted)."""
    client = session.identified_client()
    with session.usage_errors(competition=args.id):
        data = client.delete_competition(args.id)
    done = "deleted" if data["deleted"] else "archived (it has submissions; readable by id)"
    return Text(f"competition {args.id}: {done}")


@magic_arguments(name="crowdsource disqualify")
@HELP
@argument("id", type=int, help="competition id (one you host)")
@argument("participant", help="participant id or name")
@argument("--reason", required=True, help="why (they see it when they submit)")
def cmd_disqualify(self: CrowdsourceMagics, args: Any) -> Text:
    """Disqualify a participant from a competition you host."""
    client = session.identified_client()
    who: int | str = int(args.participant) if args.participant.isdigit() else args.participant
    with session.usage_errors():  # a NotFound may name the participant
        data = client.disqualify(args.id, participant=who, reason=args.reason)
    return Text(f"disqualified {data['participant']['name']} from competition {args.id}")


# -- subcommand: teams ---------------------------------------------------------------------------


@magic_arguments(name="crowdsource team")
@HELP
@argument("action", choices=("create", "join", "show"), help="make, join or show your team")
@argument("id", type=int, help="competition id")
@argument("value", nargs="?", help="create: the team's name; join: the code a member shared")
def cmd_team(self: CrowdsourceMagics, args: Any) -> Text:
    """Make a team (`create ID NAME`), join one (`join ID CODE`), or show yours (`show ID`)."""
    client = session.identified_client()
    if args.action != "show" and not args.value:
        what = "NAME" if args.action == "create" else "CODE"
        raise UsageError(f"say which: `%crowdsource team {args.action} {args.id} {what}`")
    session.competition(args.id)  # a wrong id is named as such; then NotFound is the team's
    try:
        with session.usage_errors():
            if args.action == "create":
                team = client.create_team(competition=args.id, name=args.value)
            elif args.action == "join":
                team = client.join_team(competition=args.id, code=args.value)
            else:
                team = client.team(competition=args.id)
    except UsageError as exc:  # the server names the command line's commands
        raise UsageError(str(exc).replace("`crowdsource team", "`%crowdsource team")) from None
    return Text(
        f"{team}\nothers join with: %crowdsource team join {team.competition_id} {team.code}"
    )


@magic_arguments(name="crowdsource ensemble")
@HELP
@argument("id", type=int, help="competition id (one you host)")
@argument("--k", type=int, help="only the blend of the top K entries")
def cmd_ensemble(self: CrowdsourceMagics, args: Any) -> Any:
    """The crowd's ensemble: a chart of the blend's score as k grows, best member marked."""
    from crowdsource.notebook.ensemble import ensemble_figure

    client = session.identified_client()
    with session.usage_errors(competition=args.id):
        found = client.ensemble(args.id, k=args.k)
    return ensemble_figure(found)


# -- subcommands: standings, provenance, reproduce (docs/standings.md, docs/provenance.md) -----


@magic_arguments(name="crowdsource standings")
@HELP
@argument("type", choices=competing.TYPES, help="the competition type, e.g. classify")
@argument("--participants", action="store_true", help="rank participants, not functions")
def cmd_standings(self: CrowdsourceMagics, args: Any) -> Any:
    """Functions ranked across every round of a type: a table, and a chart of rank by round."""
    from IPython.display import display

    from crowdsource.notebook.standings import standings_figure

    client = session.client()
    with session.usage_errors():
        frame = client.standings(
            type=args.type, of="participants" if args.participants else "functions"
        )
    display(frame)
    return standings_figure(frame)


@magic_arguments(name="crowdsource provenance")
@HELP
@argument("submission", type=int, help="submission id (yours; as host, after close)")
def cmd_provenance(self: CrowdsourceMagics, args: Any) -> Any:
    """Where a submission came from: its function, code digest, shared source, versions."""
    from crowdsource.notebook.provenance import provenance_view

    client = session.identified_client()
    with session.usage_errors():
        return provenance_view(client.provenance(args.submission))


@magic_arguments(name="crowdsource reproduce")
@HELP
@argument("submission", type=int, help="submission id whose function shared its source")
@argument("--timeout", type=float, default=600.0, help="seconds the function may run (600)")
def cmd_reproduce(self: CrowdsourceMagics, args: Any) -> Any:
    """Run a recorded function again in a fresh Python process; compare its predictions."""
    client = session.identified_client()
    with session.usage_errors():
        return client.reproduce(args.submission, timeout=args.timeout)


HOST_TOOLS: dict[str, Handler] = {
    "final": cmd_final,
    "board": cmd_board,
    "received": cmd_received,
    "edit": cmd_edit,
    "delete": cmd_delete,
    "disqualify": cmd_disqualify,
    "ensemble": cmd_ensemble,
}


SUBCOMMANDS: dict[str, Handler] = {
    "connect": cmd_connect,
    "register": cmd_register,
    "use": cmd_use,
    "serve": cmd_serve,
    "competitions": cmd_competitions,
    "show": cmd_show,
    "leaderboard": cmd_leaderboard,
    "browse": cmd_browse,
    "submit": cmd_submit,
    "check": cmd_check,
    "host": cmd_host,
    "resolve": cmd_resolve,
    "close": cmd_close,
    "runs": cmd_runs,
    "stop": cmd_stop,
    **HOST_TOOLS,
    "team": cmd_team,
    "standings": cmd_standings,
    "provenance": cmd_provenance,
    "reproduce": cmd_reproduce,
}


def overview() -> str:
    """The list of subcommands with their one-line descriptions."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {_summary(handler)}" for name, handler in SUBCOMMANDS.items()]
    head = "usage: %crowdsource SUBCOMMAND [ARGS]  (`%crowdsource SUBCOMMAND --help`: its options)"
    return head + "\n\n" + "\n".join(lines)


def _summary(handler: Handler) -> str:
    """The first line of a subcommand's description."""
    parser = getattr(handler, "parser", None)
    text = (parser.description if parser is not None else None) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def _help(handler: Handler) -> str:
    """A subcommand's help text, without the reST markup IPython adds."""
    text: str = handler.parser.format_help()  # type: ignore[attr-defined]
    return text.removeprefix("::").strip()


def _split(line: str) -> tuple[str, str]:
    """The subcommand and the rest of the line."""
    stripped = line.strip()
    command, _, rest = stripped.partition(" ")
    return command, rest.strip()


def _wants_help(rest: str) -> bool:
    """True if the arguments ask for help."""
    try:
        tokens = shlex.split(rest, comments=True)
    except ValueError:
        return False
    return "-h" in tokens or "--help" in tokens


@magics_class
class CrowdsourceMagics(Magics):
    """The `%crowdsource` magic."""

    @line_magic
    def crowdsource(self, line: str) -> Any:
        """Run a crowdsource subcommand: `%crowdsource --help` lists them."""
        command, rest = _split(line)
        if command in ("", "-h", "--help", "help"):
            print(overview())
            return None
        handler = SUBCOMMANDS.get(command)
        if handler is None:
            raise UsageError(
                f"unknown subcommand {command!r}: use one of {', '.join(SUBCOMMANDS)}"
                " (`%crowdsource --help` says what each does)"
            )
        if _wants_help(rest):
            print(_help(handler))
            return None
        return handler(self, _parse(handler, command, rest))


def _parse(handler: Handler, command: str, rest: str) -> Any:
    """Parse a subcommand's arguments; a mistake names the subcommand and its --help."""
    try:
        argv = glue_option_values(shlex.split(rest, comments=True))
    except ValueError as exc:
        raise UsageError(f"%crowdsource {command}: {exc} (check the quotes)") from None
    try:
        return handler.parser.parse_args(argv)  # type: ignore[attr-defined]
    except UsageError as exc:
        raise UsageError(
            f"%crowdsource {command}: {exc} (`%crowdsource {command} --help` shows its usage)"
        ) from None


def load_ipython_extension(ipython: Any) -> None:
    """Register `%crowdsource` (called by `%load_ext crowdsource`)."""
    ipython.register_magics(CrowdsourceMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop what this kernel runs for crowdsource (competing functions, live leaderboards)."""
    from crowdsource.notebook.leaderboard import stop_all

    competing.stop()
    stop_all()
