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

from crowdsource.client import Client, InvalidSubmission
from crowdsource.client.config import glue_option_values
from crowdsource.notebook import compete as competing
from crowdsource.notebook import session
from crowdsource.notebook.display import SubmissionReport, competition_details, competitions_frame
from crowdsource.notebook.embedded import EmbeddedServer

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
        return Text(f"connected to {client.url} (anonymous: `%crowdsource register NAME` to join)")
    name = (client.participant or {}).get("name")
    return Text(f"connected to {client.url} as {name!r}")


@magic_arguments(name="crowdsource register")
@HELP
@argument("name", help="your display name on the server")
@argument("--no-save", action="store_true", help="keep the token in this kernel only")
def cmd_register(self: CrowdsourceMagics, args: Any) -> Text:
    """Join the connected server as a new participant; the notebook then acts as them."""
    url = session.client().url
    server = session.state().server
    embedded = server is not None and server.url == url
    save = not (args.no_save or embedded)
    client = Client(url, progress=False)
    try:
        with session.usage_errors():
            data = client.register(args.name, save=save)
    except UsageError as exc:
        raise UsageError(f"{exc}: choose another name") from None
    session.use(client)
    where = f"token saved to {data['credentials_file']}" if save else "token kept in this kernel"
    return Text(f"registered as {data['name']!r} (participant {data['id']}); {where}")


@magic_arguments(name="crowdsource serve")
@HELP
@argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
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
    try:
        server = EmbeddedServer(port=args.port).start()
    except RuntimeError as exc:
        raise UsageError(f"{exc}; try another --port") from None
    current.server = server
    client = session.connect(server.url)
    with session.usage_errors():
        client.register(args.name, save=False)
    return Text(
        f"crowdsource server at {server.url} (temporary database); connected as {args.name!r}"
    )


def _stop_server() -> Text:
    """Stop the embedded server and forget the connection to it."""
    current = session.state()
    server, current.server = current.server, None
    if server is None:
        raise UsageError("no server runs in this kernel: `%crowdsource serve` starts one")
    competing.stop()
    if current.client is not None and current.client.url == server.url:
        current.client = None
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


SUBCOMMANDS: dict[str, Handler] = {
    "connect": cmd_connect,
    "register": cmd_register,
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
