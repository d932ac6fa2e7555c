"""The server application: traitlets configuration, routes, and start-up."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any, cast

from sqlalchemy.engine import make_url
from tornado import ioloop, netutil, web
from traitlets import Bool, Enum, Float, Integer, List, TraitError, Type, Unicode, default, validate
from traitlets.config import Application

from crowdsource import frames
from crowdsource._version import __version__
from crowdsource.extras import MissingExtra
from crowdsource.server.connections import GuardedHTTPServer, default_max_connections
from crowdsource.server.events import EventBus, PostgresEventBus, SocketEventBus, peers_folder
from crowdsource.server.managers import MANAGER_CLASSES, Managers
from crowdsource.server.monitoring import (
    Readiness,
    ServingApplication,
    Traffic,
    forget_process,
    metrics,
    share_metrics,
    unshare_metrics,
)
from crowdsource.server.ratelimit import RateLimiter, SharedRateLimiter
from crowdsource.server.scoring.cluster import SchedulerUnreachable
from crowdsource.server.scoring.workers import Workers, end_with_parent
from crowdsource.server.storage.engine import database_url, unavailable
from crowdsource.server.storage.store import RefusedStart, Store, prepare_database

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
ENV_PREFIX = "CROWDSOURCE_"  # CROWDSOURCE_<OPTION> in the environment sets --<option>
SAMPLE_SECONDS = 2.0  # how often the gauges that are read, not counted, are refreshed
MAX_RESTARTS = 100  # crashes of serving processes before the server gives up
UNREACHABLE = 3  # exit status when the Dask scheduler cannot be reached at start
HANDLER_MODULES = (
    "participants",
    "competitions",
    "submissions",
    "teams",
    "leaderboards",
    "standings",
    "events",
    "meta",
    "pages",
)


def routes() -> list[Any]:
    """Every route of every handler module."""
    table: list[Any] = []
    for name in HANDLER_MODULES:
        try:
            module = importlib.import_module(f"crowdsource.server.handlers.{name}")
        except ModuleNotFoundError:
            if name != "pages":
                raise
            continue
        table.extend(module.default_handlers)
    return table


def log_request(handler: web.RequestHandler) -> None:
    """Access log, as Jupyter Server keeps it: answered requests at DEBUG (see them with
    --log-level=DEBUG), refusals at INFO, failures at ERROR; each with its time."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.ERROR
    access = logging.getLogger("tornado.access")
    if access.isEnabledFor(level):
        ms = 1000.0 * handler.request.request_time()
        access.log(level, "%d %s %.2fms", status, handler._request_summary(), ms)


def make_app(
    managers: Managers,
    *,
    allow_origins: list[str],
    max_body_size: int,
    limiter: RateLimiter,
    max_json_size: int = 64 * 1024,
    small_body_timeout: float = 60.0,
    process: int = 1,
    ping_interval: float = 20.0,
    traffic: Traffic | None = None,
    readiness: Readiness | None = None,
) -> web.Application:
    """The Tornado application over the managers, in serving process number `process`;
    `traffic` counts its requests and WebSockets, `readiness` answers /readyz."""
    from crowdsource.server.handlers.base import NotFoundHandler

    return ServingApplication(
        routes(),
        **managers.settings(),
        traffic=traffic or Traffic(),
        readiness=readiness,
        rate_limiter=limiter,
        allow_origins=allow_origins,
        max_body_size=max_body_size,
        max_json_size=max_json_size,
        small_body_timeout=small_body_timeout,
        process=process,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        debug=False,
        serve_traceback=False,
        websocket_ping_interval=ping_interval,
    )


def load_secret(path: Path) -> bytes:
    """The server's secret key: read it, or create it (mode 600) on first start."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def sqlite_files(db: str) -> list[Path]:
    """The files of a SQLite database (none for another database or one in memory)."""
    url = make_url(database_url(db))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return []
    return [Path(url.database + suffix) for suffix in ("", "-wal", "-shm")]


def write_atomically(path: Path, text: str) -> None:
    """Replace a file's content in one step, so a reader never sees half of it."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    part.write_text(text)
    part.replace(path)


class CrowdsourceServer(Application):
    """crowdsource server: competitions from DataFrames, scored live."""

    name = "crowdsource-serve"
    version = __version__
    description = (
        "Run the crowdsource competition server.\n\n"
        "Every option below can also be set in the environment as CROWDSOURCE_<OPTION> "
        "(the option's name in capitals, dashes as underscores: CROWDSOURCE_DB, "
        "CROWDSOURCE_PORT, CROWDSOURCE_IP, CROWDSOURCE_DB_POOL_SIZE, CROWDSOURCE_NO_MIGRATE=1, "
        "...; lists comma-separated), in a config file (--config), or as "
        "--CrowdsourceServer.<option>=<value>. The command line beats the environment, "
        "which beats the config file, which beats the defaults."
    )
    examples = (
        "crowdsource serve                      # port 8889, ./crowdsource.db\n"
        "crowdsource serve --port=9000 --ip=0.0.0.0 --db=/data/cs.db\n"
        "crowdsource serve --db=postgresql+psycopg://user@host/db --scoring=dask"
    )

    ip = Unicode("127.0.0.1", help="Interface to listen on (0.0.0.0 for every one).").tag(
        config=True
    )
    port = Integer(8889, help="Port to listen on (0: any free one; see --port-file).").tag(
        config=True
    )
    port_file = Unicode(
        "",
        help=(
            "Once listening, write the port to this file (for supervisors and scripts that "
            "start the server with --port=0)."
        ),
    ).tag(config=True)
    db = Unicode(
        "crowdsource.db",
        help=(
            "Database: a SQLite file path, or a SQLAlchemy URL such as "
            "postgresql+psycopg://user@host/db."
        ),
    ).tag(config=True)
    sqlite_synchronous = Enum(
        ["NORMAL", "FULL"],
        "NORMAL",
        help=(
            "SQLite durability: NORMAL (WAL) keeps every acknowledged write through a crash of "
            "the server process; FULL also through a power cut or OS crash, at an fsync per "
            "write (about 6 ms here)."
        ),
    ).tag(config=True)
    secret_file = Unicode(
        help=(
            "File holding the server's secret key (tokens are hashed with it); created on first "
            "start. Default: beside the SQLite file, or ./crowdsource.secret."
        )
    ).tag(config=True)
    allow_origins = List(
        Unicode(),
        ["*"],
        help=(
            "Origins allowed to call the API from a browser (CORS) and open the event stream. "
            "Tokens travel in headers, never cookies, so '*' exposes nothing."
        ),
    ).tag(config=True)
    max_body_mb = Float(
        512.0,
        help=(
            "Largest request body that carries frames (hosting, answers, submissions), in MiB; "
            "413 above, refused from the declared Content-Length before the body is read."
        ),
    ).tag(config=True)
    max_json_kb = Integer(
        64,
        help=(
            "Largest body of every other request (registration and other small JSON), in KiB; "
            "413 above, refused before the body is read."
        ),
    ).tag(config=True)
    idle_timeout = Float(
        60.0,
        help=(
            "Seconds a connection may take to send a request's headers, counted from the end "
            "of its previous request (so also how long an idle keep-alive connection stays "
            "open), and a small body (one without frames) once its headers are in; then it is "
            "closed. Bounds connections that never finish their headers."
        ),
    ).tag(config=True)
    ping_interval = Float(
        20.0,
        help="Seconds between pings on an idle event stream (keeps proxies from closing it).",
    ).tag(config=True)
    body_timeout = Float(
        3600.0,
        help=(
            "Seconds a body carrying frames may take to arrive once its headers have (a "
            "512 MiB upload at 1 MB/s takes about 540 s); then the connection is closed."
        ),
    ).tag(config=True)
    max_connections = Integer(
        0,
        help=(
            "Open connections (HTTP and WebSocket) above which a new one is answered 503 with "
            "Connection: close; 0: half the process's open-file limit (ulimit -n)."
        ),
    ).tag(config=True)
    max_rows = Integer(
        50_000_000,
        help=(
            "Most rows one Parquet body (dataset, answer, predictions) may declare; its footer "
            "is checked before anything is decoded (413 above). Predictions may never hold "
            "more rows than their competition's dataset."
        ),
    ).tag(config=True)
    max_columns = Integer(
        10_000, help="Most columns one Parquet body may declare (413 above)."
    ).tag(config=True)
    max_decoded_mb = Float(
        2048.0,
        help=(
            "Most MiB one Parquet body may decode to, reckoned from its footer (rows times "
            "value widths, plus page sizes) and from its text dictionaries before they are "
            "expanded (413 above): a small file cannot make the server allocate gigabytes."
        ),
    ).tag(config=True)
    scoring = Enum(
        ["process", "thread", "dask"],
        "process",
        help=("Where large submissions are scored: a local process pool, threads, or Dask."),
    ).tag(config=True)
    processes = Integer(
        1,
        help=(
            "Server processes sharing the port (Linux): each answers requests and has its own "
            "scoring pool; events and leaderboards stay live across them (Unix sockets in a "
            "private folder of the temporary directory on SQLite, LISTEN/NOTIFY on PostgreSQL). "
            "A crashed one is restarted; SIGTERM or Ctrl-C stops them all, and the server exits "
            "once they have, so it can start again on the same port at once."
        ),
    ).tag(config=True)
    scoring_processes = Integer(
        max(1, (os.cpu_count() or 2) - 1),
        help="Processes in the scoring pool (default: one per core, less the server's own).",
    ).tag(config=True)
    inline_kb = Integer(
        256,
        help=(
            "Bodies up to this size (KiB) are scored on a thread; larger ones go to a temporary "
            "file as they arrive, and the scoring pool reads, scores and stores them from there."
        ),
    ).tag(config=True)
    dask_scheduler = Unicode(
        "", help=("Dask scheduler address for --scoring=dask (empty: a local cluster).")
    ).tag(config=True)
    scoring_timeout = Float(
        300.0,
        help=(
            "Seconds a large submission may take to score on the pool or on Dask; past them it "
            "fails with a reason that says so (or, with --dask-fallback=local, is scored here)."
        ),
    ).tag(config=True)
    dask_fallback = Enum(
        ["fail", "local"],
        "fail",
        help=(
            "With --scoring=dask, when the scheduler is unreachable (at start too) or a job "
            "runs past --scoring-timeout: fail the submission with the reason, or score it on "
            "this machine's process pool."
        ),
    ).tag(config=True)
    write_rate = Float(
        20.0,
        help=(
            "Writes (POSTs) per second allowed per participant, sustained; 0 turns the limit "
            "off. Above it the server answers 429 with Retry-After."
        ),
    ).tag(config=True)
    write_burst = Integer(200, help="Writes per participant allowed in one burst.").tag(config=True)
    no_migrate = Bool(
        False,
        help=(
            "Do not create or upgrade the database schema at start (deployments that run "
            "`crowdsource db upgrade` as a step of their own); refuse to start if it is not "
            "current. Without it, servers starting together migrate one at a time under a "
            "lock (a PostgreSQL advisory lock; SQLite's write lock)."
        ),
    ).tag(config=True)
    drain_timeout = Float(
        30.0,
        help=(
            "On SIGTERM, seconds to finish requests in flight and background scoring after "
            "the server stops accepting connections and closes WebSockets (code 1001); then "
            "it exits 0. Requests still running then are cut off (their clients see the "
            "connection close, never a 500)."
        ),
    ).tag(config=True)
    db_pool_size = Integer(
        8,
        help=(
            "Database connections each server process keeps open; also the number of its "
            "threads running transactions. Per process on PostgreSQL: up to db-pool-size + "
            "db-max-overflow connections, plus 2 for the event bus."
        ),
    ).tag(config=True)
    db_max_overflow = Integer(
        8,
        help=(
            "Database connections a server process may open above --db-pool-size at busy "
            "times (closed again when returned)."
        ),
    ).tag(config=True)
    trust_xheaders = Bool(
        False,
        help=("Trust X-Forwarded-For / X-Real-Ip from a load balancer in front (for the logs)."),
    ).tag(config=True)
    config_file = Unicode("", help="A Python or JSON config file to load.").tag(config=True)
    event_bus_class = Type(
        default_value=None,
        klass=EventBus,
        allow_none=True,
        help=(
            "The event bus (a subclass of crowdsource.server.events.EventBus). Default: "
            "PostgresEventBus on PostgreSQL, SocketEventBus with --processes above 1, else the "
            "in-process EventBus."
        ),
    ).tag(config=True)
    workers_class = Type(
        default_value=Workers,
        klass=Workers,
        help="What runs scoring jobs (crowdsource.server.scoring.workers.Workers or a subclass).",
    ).tag(config=True)

    @property
    def classes(self) -> list[Any]:  # type: ignore[override]
        """Configurable classes, for --help-all and config files."""
        return [CrowdsourceServer, *MANAGER_CLASSES]

    aliases = {
        "ip": "CrowdsourceServer.ip",
        "port": "CrowdsourceServer.port",
        "port-file": "CrowdsourceServer.port_file",
        "db": "CrowdsourceServer.db",
        "secret-file": "CrowdsourceServer.secret_file",
        "allow-origin": "CrowdsourceServer.allow_origins",
        "max-body-mb": "CrowdsourceServer.max_body_mb",
        "max-json-kb": "CrowdsourceServer.max_json_kb",
        "idle-timeout": "CrowdsourceServer.idle_timeout",
        "body-timeout": "CrowdsourceServer.body_timeout",
        "ping-interval": "CrowdsourceServer.ping_interval",
        "max-connections": "CrowdsourceServer.max_connections",
        "max-rows": "CrowdsourceServer.max_rows",
        "max-columns": "CrowdsourceServer.max_columns",
        "max-decoded-mb": "CrowdsourceServer.max_decoded_mb",
        "scoring": "CrowdsourceServer.scoring",
        "scoring-processes": "CrowdsourceServer.scoring_processes",
        "processes": "CrowdsourceServer.processes",
        "dask-scheduler": "CrowdsourceServer.dask_scheduler",
        "dask-fallback": "CrowdsourceServer.dask_fallback",
        "scoring-timeout": "CrowdsourceServer.scoring_timeout",
        "inline-kb": "CrowdsourceServer.inline_kb",
        "sqlite-synchronous": "CrowdsourceServer.sqlite_synchronous",
        "config": "CrowdsourceServer.config_file",
        "write-rate": "CrowdsourceServer.write_rate",
        "write-burst": "CrowdsourceServer.write_burst",
        "drain-timeout": "CrowdsourceServer.drain_timeout",
        "db-pool-size": "CrowdsourceServer.db_pool_size",
        "db-max-overflow": "CrowdsourceServer.db_max_overflow",
        "live-top": "LeaderboardManager.live_top",
        "push-rate": "LeaderboardManager.push_rate",
        "send-queue-kb": "LeaderboardManager.send_queue_kb",
        "standings-every": "StandingsManager.every",
        "log-level": "Application.log_level",
    }
    flags = {
        "debug": ({"Application": {"log_level": "DEBUG"}}, "Log at debug level."),
        "no-migrate": (
            {"CrowdsourceServer": {"no_migrate": True}},
            "Do not migrate the database at start; refuse to start if it is not current.",
        ),
    }

    @default("log_level")
    def _default_log_level(self) -> int:
        """Log each request at INFO, with its timing."""
        return logging.INFO

    @default("secret_file")
    def _default_secret_file(self) -> str:
        """Beside the SQLite file, or in the working directory."""
        if "://" in self.db:
            return str(Path("crowdsource.secret").resolve())
        return str(Path(self.db).expanduser().resolve()) + ".secret"

    @validate("processes")
    def _check_processes(self, proposal: Any) -> int:
        """At least one."""
        value = int(proposal["value"])
        if value < 1:
            raise ValueError(f"--processes must be 1 or more; got {value}")
        return value

    @validate("db_pool_size", "db_max_overflow")
    def _check_pool(self, proposal: Any) -> int:
        """At least one kept connection; no negative overflow."""
        value = int(proposal["value"])
        if value < (1 if proposal["trait"].name == "db_pool_size" else 0):
            raise ValueError(f"--{proposal['trait'].name.replace('_', '-')} is too small: {value}")
        return value

    @validate("max_json_kb", "max_connections")
    def _check_count(self, proposal: Any) -> int:
        """Not negative (0 has a meaning for --max-connections only)."""
        value = int(proposal["value"])
        if value < 0 or (value == 0 and proposal["trait"].name == "max_json_kb"):
            raise ValueError(f"--{proposal['trait'].name.replace('_', '-')} must be positive")
        return value

    @validate("idle_timeout", "body_timeout", "ping_interval")
    @validate("idle_timeout", "body_timeout", "scoring_timeout", "drain_timeout")
    def _check_timeout(self, proposal: Any) -> float:
        """A positive number of seconds."""
        value = float(proposal["value"])
        if not value > 0:
            raise ValueError(f"--{proposal['trait'].name.replace('_', '-')} must be positive")
        return value

    @validate("port")
    def _check_port(self, proposal: Any) -> int:
        """A TCP port."""
        value = int(proposal["value"])
        if not 0 <= value <= 65535:
            raise ValueError(f"--port must be from 0 to 65535; got {value}")
        return value

    def initialize(self, argv: Any = None) -> None:
        """Parse the command line, the environment and any config file."""
        super().initialize(argv)
        env = self._environment()
        path = Path(str(env.get("config_file", self.config_file)))
        if self.config_file or "config_file" in env:
            self.load_config_file(path.name, path=str(path.parent))
        for name, value in env.items():  # over the file, under the command line
            if name not in self.cli_config.get("CrowdsourceServer", {}):
                try:
                    setattr(self, name, value)
                except (TraitError, ValueError) as exc:
                    self.log.critical("%s%s: %s", ENV_PREFIX, name.upper(), exc)
                    self.exit(2)
        level = os.environ.get(ENV_PREFIX + "LOG_LEVEL")
        if level and "log_level" not in self.cli_config.get("Application", {}):
            self.log_level = level
        which = " %(process)d" if self.processes > 1 else ""  # which process logged a line
        logging.basicConfig(
            level=cast(int, self.log_level),
            format=f"%(asctime)s{which} %(levelname)s %(name)s: %(message)s",
        )

    def _environment(self) -> dict[str, Any]:
        """The server's options set as CROWDSOURCE_<OPTION> in the environment, parsed; a
        value that does not parse stops the server with one line saying which."""
        found: dict[str, Any] = {}
        for name, trait in self.class_traits(config=True).items():
            text = os.environ.get(ENV_PREFIX + name.upper())
            if text is None:
                continue
            try:
                if isinstance(trait, List):
                    found[name] = trait.from_string_list([p for p in text.split(",") if p])
                else:
                    found[name] = trait.from_string(text)
            except (TraitError, ValueError) as exc:
                self.log.critical("%s%s=%r: %s", ENV_PREFIX, name.upper(), text, exc)
                self.exit(2)
        return found

    def start(self) -> None:
        """Run until stopped; an optional part that is missing is one line naming its extra."""
        try:
            self._start()
        except MissingExtra as exc:
            self.log.critical("%s", exc)
            self.exit(1)

    def _start(self) -> None:
        """Run until stopped: one process, or `--processes` of them sharing the port."""
        os.umask(0o077)  # every file and folder the server makes is for its user alone
        self._warn_if_open(Path(self.secret_file), *sqlite_files(self.db))
        secret = load_secret(Path(self.secret_file))  # made once, before any process reads it
        self._prepare(secret)
        if self.processes == 1:
            asyncio.run(self._serve(index=0))
            return
        probe = self._claim_port()  # held, not listening: nobody else takes the port meanwhile
        self.port = int(probe.getsockname()[1])
        folder = share_metrics()  # before forking: every process writes its metrics there
        index = self._fork(folder)
        probe.close()  # the serving processes bind their own
        asyncio.run(self._serve(index=index))

    def _prepare(self, secret: bytes) -> None:
        """Migrate (or check the schema) and check the secret; a refusal or an unreachable
        database stops the server with one line saying what to do."""
        try:
            prepare_database(
                self.db,
                upgrade=not self.no_migrate,
                secret=secret,
                secret_file=str(Path(self.secret_file).resolve()),  # the file to replace
            )
        except RefusedStart as exc:
            self.log.critical("not starting: %s", exc)
            self.exit(1)
        except Exception as exc:
            if not unavailable(exc):
                raise
            first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
            self.log.critical(
                "not starting: cannot reach the database %s (%s); check --db and that the "
                "database server is up",
                make_url(database_url(self.db)).render_as_string(hide_password=True),
                first,
            )
            self.exit(1)

    def _warn_if_open(self, *paths: Path) -> None:
        """Say so when a file made before (or by hand) lets other users read it."""
        for path in paths:
            if path.exists() and path.stat().st_mode & 0o077:
                self.log.warning(
                    "%s can be read by other users (mode %o): it holds answers, predictions "
                    "or token keys; run chmod 600 on it",
                    path,
                    path.stat().st_mode & 0o777,
                )

    def _claim_port(self) -> socket.socket:
        """A socket bound to the port the processes will share, with their options:
        SO_REUSEPORT (the kernel spreads connections evenly over them) and SO_REUSEADDR (the
        connections a stopped server left in TIME_WAIT do not block a restart); with port 0,
        a free one."""
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((self.ip, self.port))
        except OSError as exc:
            probe.close()
            self._refuse_port(exc)
        return probe

    def _bind(self) -> list[socket.socket]:
        """Listening sockets on --ip and --port, as Tornado binds them (SO_REUSEADDR, and
        SO_REUSEPORT when several processes share the port)."""
        try:
            return netutil.bind_sockets(self.port, self.ip, reuse_port=self.processes > 1)
        except OSError as exc:
            self._refuse_port(exc)
            raise  # not reached

    def _refuse_port(self, exc: OSError) -> None:
        """Exit with one line when the port is taken; re-raise any other failure."""
        if exc.errno != errno.EADDRINUSE:
            raise exc
        self.log.critical(
            "port %d on %s is in use by another program: stop it or choose another --port",
            self.port,
            self.ip,
        )
        self.exit(1)

    def _fork(self, metrics_folder: str) -> int:
        """Fork the serving processes and stay to watch them: one that crashes is started
        again; on SIGTERM or SIGINT they are stopped and waited for, so that the port and the
        database are free once this process is gone. Returns the serving process's index."""
        parent = os.getpid()
        children: dict[int, int] = {}  # pid: index
        stopping = False

        def stop(_signum: int, _frame: Any) -> None:
            """Pass the stop on to every serving process."""
            nonlocal stopping
            stopping = True
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        def spawn(index: int) -> bool:
            """Fork one serving process; True in it."""
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # none lands mid-fork
            pid = os.fork()
            if pid == 0:
                for sig, handler in before.items():
                    signal.signal(sig, handler)
            else:
                children[pid] = index
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            return pid == 0

        before = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
        restarts = gave_up = 0
        pending = list(range(self.processes))
        while pending or children:
            for index in [] if stopping else pending:
                if spawn(index):
                    end_with_parent(parent, signal.SIGTERM)
                    return index
            pending = []
            pid, status = os.wait()
            index = children.pop(pid, -1)
            forget_process(pid)
            if index < 0 or stopping or os.waitstatus_to_exitcode(status) == 0:
                continue
            restarts += 1
            code = os.waitstatus_to_exitcode(status)
            if code == UNREACHABLE:  # it said why; starting it again cannot help
                stop(signal.SIGTERM, None)
                gave_up = UNREACHABLE
                continue
            self.log.warning(
                "server process %d (pid %d) %s; starting it again",
                index + 1,
                pid,
                f"was killed by signal {-code}" if code < 0 else f"exited with status {code}",
            )
            if restarts > MAX_RESTARTS:
                self.log.critical("server processes keep failing; see the log above")
                stop(signal.SIGTERM, None)
                continue
            pending = [index]
        unshare_metrics(metrics_folder)
        sys.exit(gave_up or (1 if restarts > MAX_RESTARTS else 0))

    def _bus(self, store: Store) -> EventBus:
        """The event bus: the configured class, or the one the database and processes need."""
        cls: Any = self.event_bus_class
        if cls is None:
            if store.dialect == "postgresql":
                cls = PostgresEventBus
            else:
                cls = SocketEventBus if self.processes > 1 else EventBus
        if issubclass(cls, PostgresEventBus):
            return cls(libpq_dsn(store.url))
        if issubclass(cls, SocketEventBus):
            return cls(peers_folder(store.url))
        return cls()

    async def _serve(self, *, index: int) -> None:
        """Open the database, listen, finish pending work, and wait."""
        frames.set_limits(
            frames.Limits(
                rows=self.max_rows,
                columns=self.max_columns,
                decoded_bytes=int(self.max_decoded_mb * 2**20),
            )
        )
        store = Store(
            db=self.db,
            sqlite_synchronous=self.sqlite_synchronous,
            threads=self.db_pool_size,
            pool_size=self.db_pool_size,
            max_overflow=self.db_max_overflow,
        )
        workers = self.workers_class(
            backend=self.scoring,
            processes=self.scoring_processes,
            inline_bytes=self.inline_kb * 1024,
            dask_scheduler=self.dask_scheduler,
            timeout=self.scoring_timeout,
            dask_fallback=self.dask_fallback,
        )
        try:
            await workers.start()
        except SchedulerUnreachable as exc:
            self.log.critical("%s", exc)
            self.exit(UNREACHABLE)
        managers = Managers.build(
            store=store,
            bus=self._bus(store),
            workers=workers,
            secret=load_secret(Path(self.secret_file)),
            parent=self,
        )
        max_body = int(self.max_body_mb * 2**20)
        traffic = Traffic()
        app = make_app(
            managers,
            allow_origins=list(self.allow_origins),
            max_body_size=max_body,
            max_json_size=self.max_json_kb * 1024,
            small_body_timeout=self.idle_timeout,
            limiter=self._limiter(store),
            process=index + 1,
            ping_interval=self.ping_interval,
            traffic=traffic,
            readiness=Readiness(store=store, bus=managers.bus, workers=workers, traffic=traffic),
        )
        server = GuardedHTTPServer(
            app,
            max_body_size=max_body + 1024,
            xheaders=self.trust_xheaders,
            idle_connection_timeout=self.idle_timeout,  # Tornado's header timeout too
            body_timeout=self.body_timeout,
        )
        server.max_connections = self.max_connections or default_max_connections()
        sockets = self._bind()
        server.add_sockets(sockets)
        self.port = int(sockets[0].getsockname()[1])
        if self.port_file:
            write_atomically(Path(self.port_file), f"{self.port}\n")
        url = f"http://{'127.0.0.1' if self.ip in ('0.0.0.0', '') else self.ip}:{self.port}"
        self.log.info(
            "crowdsource %s listening on %s (database %s%s)",
            __version__,
            url,
            store.engine.url.render_as_string(hide_password=True),
            f"; process {index + 1} of {self.processes}" if self.processes > 1 else "",
        )
        self.log.info("live leaderboards at %s/leaderboard", url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sampler = ioloop.PeriodicCallback(
            lambda: metrics().sample_pool(store.engine.pool), SAMPLE_SECONDS * 1000
        )
        sampler.start()
        # Recovery and warming run while the server serves; a stop does not wait for them
        # (what they leave undone is done at the next start).
        starting = asyncio.ensure_future(self._recover(managers, first=index == 0))
        await stop.wait()
        starting.cancel()
        sampler.stop()
        await self._drain(server, traffic, managers)
        managers.close()
        await workers.closed()
        self.log.info("stopped")

    async def _recover(self, managers: Managers, *, first: bool) -> None:
        """Finish what a stop left (the first process of several does it) and start the
        scoring pool's workers."""
        try:
            await managers.recover(rescore=first)
            await asyncio.get_running_loop().run_in_executor(None, managers.workers.warm)
        except Exception:
            self.log.exception("recovery after the start failed; serving on")

    def _limiter(self, store: Store) -> RateLimiter:
        """Write-rate buckets in memory for one process alone, else in the database (shared by
        every process and every server on it)."""
        if store.dialect == "postgresql" or self.processes > 1:
            return SharedRateLimiter(rate=self.write_rate, burst=self.write_burst, store=store)
        return RateLimiter(rate=self.write_rate, burst=self.write_burst)

    async def _drain(self, server: GuardedHTTPServer, traffic: Traffic, managers: Managers) -> None:
        """Stop gracefully: stop accepting and say so on /readyz, close WebSockets with 1001,
        finish requests in flight and background scoring up to --drain-timeout, then close
        what connections are left (idle keep-alive ones, or requests past the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        self.log.info(
            "stopping: %d request(s) in flight, %d WebSocket(s); waiting up to %g s",
            len(traffic.in_flight),
            len(traffic.websockets),
            self.drain_timeout,
        )
        traffic.draining = True
        server.stop()  # no new connections: the balancer's next try goes to another server
        server.conn_params.no_keep_alive = True  # answers from now on close their connection
        await traffic.close_websockets("the server is stopping", min(2.0, self.drain_timeout))
        if not await traffic.quiet(max(0.0, deadline - loop.time())):
            self.log.warning(
                "%d request(s) still running after --drain-timeout; cutting them off",
                len(traffic.in_flight),
            )
        background = managers.submissions.tasks.drain()
        try:
            await asyncio.wait_for(background, max(0.1, deadline - loop.time()))
        except asyncio.TimeoutError:
            self.log.warning("background scoring still running; it is finished after a restart")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 5.0)


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    """Start the server from command-line arguments; returns the exit code."""
    CrowdsourceServer.launch_instance(argv)
    return 0
