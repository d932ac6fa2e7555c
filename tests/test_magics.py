"""`%crowdsource` on a real IPython InteractiveShell against a real server."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from crowdsource.notebook import compete as competing
from crowdsource.notebook import session
from crowdsource.notebook.display import SubmissionReport
from crowdsource.notebook.leaderboard import LeaderboardWidget
from crowdsource.notebook.session import NotebookCompetition
from tests.support import ServerProcess


def unique(prefix: str) -> str:
    """A participant name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A real IPython shell with the extension loaded and no connection."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    monkeypatch.delenv("CROWDSOURCE_URL", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "crowdsource")
    session.state().client = None
    yield ip
    competing.stop()
    session.state().client = None


def cs(ip: InteractiveShell, line: str) -> Any:
    """Run `%crowdsource LINE` and return its value."""
    return ip.run_line_magic("crowdsource", line)


def usage_error(ip: InteractiveShell, line: str) -> str:
    """The one-line UsageError message that `%crowdsource LINE` raises."""
    with pytest.raises(UsageError) as info:
        cs(ip, line)
    message = str(info.value)
    assert "\n" not in message
    assert type(info.value) is UsageError  # IPython shows exactly this type without traceback
    return message


def iris_like(rows: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small seeded classification dataset and its answer."""
    rng = np.random.default_rng(7)
    data = pd.DataFrame({"id": range(rows), "x": rng.normal(size=rows)})
    answer = pd.DataFrame({"id": range(rows), "label": np.where(data["x"] > 0, "a", "b")})
    return data, answer


@pytest.fixture
def hosted(shell: InteractiveShell, sqlite_server: ServerProcess) -> NotebookCompetition:
    """Connected as a fresh host who has hosted a small classify competition."""
    shell.user_ns["data"], shell.user_ns["answer"] = iris_like()
    cs(shell, f"connect {sqlite_server.url}")
    cs(shell, f"register {unique('host')}")
    return cs(shell, "host data answer --title Small --metric accuracy")


@pytest.fixture
def participant(shell: InteractiveShell, hosted: NotebookCompetition) -> NotebookCompetition:
    """The host's competition, with the notebook now acting as a new participant."""
    cs(shell, f"register {unique('alice')}")
    prediction = hosted.template()
    prediction["label"] = "a"
    shell.user_ns["pred"] = prediction
    return hosted


# -- help and mistakes before connecting -----------------------------------------------------------
def test_help_lists_every_subcommand(shell: InteractiveShell, capsys: Any) -> None:
    """`%crowdsource --help` lists the subcommands with a line each."""
    cs(shell, "--help")
    out = capsys.readouterr().out
    for name in ("connect", "register", "serve", "host", "submit", "leaderboard", "runs"):
        assert f"  {name} " in out


def test_subcommand_help(shell: InteractiveShell, capsys: Any) -> None:
    """`%crowdsource submit --help` shows its usage, even without arguments or connection."""
    cs(shell, "submit --help")
    out = capsys.readouterr().out
    assert out.startswith("%crowdsource submit [-h] id var")
    assert "DataFrame variable" in out


def test_unknown_subcommand(shell: InteractiveShell) -> None:
    """A typo names the subcommands there are."""
    assert "use one of connect, register" in usage_error(shell, "sumbit 1 x")


def test_bad_arguments_point_to_help(shell: InteractiveShell) -> None:
    """Missing or malformed arguments name the subcommand's --help."""
    assert "`%crowdsource submit --help`" in usage_error(shell, "submit 1")
    assert "invalid int value" in usage_error(shell, "show one")


def test_not_connected(shell: InteractiveShell) -> None:
    """Every server subcommand says to connect first."""
    for line in ("competitions", "show 1", "submit 1 x", "leaderboard 1", "register bob"):
        assert "run `%crowdsource connect URL`" in usage_error(shell, line)


def test_trailing_comment(shell: InteractiveShell) -> None:
    """A `# comment` after the arguments is ignored, as in Python."""
    assert "not connected" in usage_error(shell, "competitions --type classify  # all of them")


def test_connect_to_nothing(shell: InteractiveShell) -> None:
    """A server that does not answer is a one-line mistake."""
    from tests.support import refusing_port

    with refusing_port() as port:
        message = usage_error(shell, f"connect 127.0.0.1:{port}")
    assert "cannot reach" in message
    assert "check the URL" in message


# -- connection and identity -----------------------------------------------------------------------
def test_connect_anonymously(shell: InteractiveShell, sqlite_server: ServerProcess) -> None:
    """Without a token the notebook can look but is told how to join."""
    text = cs(shell, f"connect {sqlite_server.url}")
    assert "anonymous" in repr(text)
    assert "register NAME" in usage_error(shell, "submit 1 x")


def test_register_saves_and_connect_reuses(
    shell: InteractiveShell, sqlite_server: ServerProcess
) -> None:
    """`register` saves the token; a later `connect` to the same server is that participant."""
    name = unique("carol")
    cs(shell, f"connect {sqlite_server.url}")
    assert "token saved to" in cs(shell, f"register {name}")
    assert repr(cs(shell, f"connect {sqlite_server.url}")).endswith(f"as {name!r}")


def test_register_taken_name(shell: InteractiveShell, sqlite_server: ServerProcess) -> None:
    """A taken name says to choose another."""
    name = unique("dave")
    sqlite_server.register(name)
    cs(shell, f"connect {sqlite_server.url}")
    assert "choose another name" in usage_error(shell, f"register {name}")


def test_connect_with_bad_token(shell: InteractiveShell, sqlite_server: ServerProcess) -> None:
    """A token the server rejects is a mistake with the way out."""
    message = usage_error(shell, f"connect {sqlite_server.url} --token nope")
    assert "does not accept this token" in message


# -- hosting ---------------------------------------------------------------------------------------
def test_host_from_variables(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """`host data answer` creates the competition and returns it, with a one-line repr."""
    assert hosted.title == "Small"
    assert repr(hosted).startswith(f"<Competition {hosted.id} 'Small': classify, accuracy")
    assert hosted.id in cs(shell, "competitions").index


def test_host_quoted_title(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """Quoted arguments lose their quotes, as in a shell."""
    assert cs(shell, 'host data answer --title "Two words"').title == "Two words"


def test_host_a_ladder(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """`--public-scoring ladder` makes the public board a Ladder (docs/ladder.md)."""
    comp = cs(shell, "host data answer --public-scoring ladder --ladder-step 0.05")
    assert (comp.public_scoring, comp.ladder_step) == ("ladder", 0.05)


def test_host_without_answer(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """Only a predict round may start without an answer."""
    assert "give the answer too" in usage_error(shell, "host data")


def test_host_needs_frames(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """Hosting from a variable that is not a DataFrame says so."""
    shell.user_ns["numbers"] = [1, 2, 3]
    assert "'numbers' is a list, not a DataFrame" in usage_error(shell, "host numbers answer")


def test_show(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """`show ID` returns a dataset preview of the asked size."""
    preview = cs(shell, f"show {hosted.id} --rows 3")
    assert list(preview.columns) == ["id", "x"]
    assert len(preview) == 3


def test_show_wrong_id(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """A competition that does not exist points to the list."""
    message = usage_error(shell, "show 999999")
    assert message.startswith("no competition 999999")
    assert "%crowdsource competitions" in message


# -- submitting ------------------------------------------------------------------------------------
def test_submit(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """`submit ID VAR` shows score, rank and quota."""
    report = cs(shell, f"submit {participant.id} pred")
    assert isinstance(report, SubmissionReport)
    assert report.submission.state == "scored"
    assert "public score" in repr(report)
    assert "rank 1" in repr(report)
    assert "no daily limit" in repr(report)


def test_submit_not_a_frame(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """A variable that is not a DataFrame is named, with the type it is."""
    shell.user_ns["guess"] = {"id": 1}
    message = usage_error(shell, f"submit {participant.id} guess")
    assert "'guess' is a dict, not a DataFrame" in message


def test_submit_missing_variable(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """A variable that does not exist is named."""
    assert "no variable named 'nothing'" in usage_error(shell, f"submit {participant.id} nothing")


def test_submit_missing_ids(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """A frame with missing ids: the server's reason, on one line."""
    shell.user_ns["partial"] = shell.user_ns["pred"].head(10)
    message = usage_error(shell, f"submit {participant.id} partial")
    assert f"'partial' does not fit competition {participant.id}" in message
    assert "missing" in message


def test_submit_wrong_competition(
    shell: InteractiveShell, participant: NotebookCompetition
) -> None:
    """Submitting to a competition that does not exist points to the list."""
    assert "no competition 999999" in usage_error(shell, "submit 999999 pred")


def test_host_cannot_submit(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """The server's refusal reaches the notebook as one line."""
    shell.user_ns["pred"] = hosted.template().assign(label="a")
    assert "host" in usage_error(shell, f"submit {hosted.id} pred")


# -- predict rounds, closing -----------------------------------------------------------------------
def test_predict_round_resolved(shell: InteractiveShell, sqlite_server: ServerProcess) -> None:
    """Host a predict round without answer; a submission waits; `resolve` re-scores it."""
    days = pd.DataFrame({"id": range(5), "day": range(5)})
    shell.user_ns.update(days=days, truth=pd.DataFrame({"id": [0, 1], "value": [1.0, 2.0]}))
    cs(shell, f"connect {sqlite_server.url}")
    host = unique("host")
    cs(shell, f"register {host}")
    token = session.client().token
    round_ = cs(shell, "host days --type predict --targets value --title Future")
    cs(shell, f"register {unique('eve')}")
    shell.user_ns["guess"] = days[["id"]].assign(value=1.5)
    assert cs(shell, f"submit {round_.id} guess").submission.state == "awaiting_answer"
    cs(shell, f"connect {sqlite_server.url} --token {token}")  # back as the host
    text = repr(cs(shell, f"resolve {round_.id} truth"))
    assert text == f"competition {round_.id}: 2 answer rows known; 1 submissions re-scored"


def test_resolve_needs_host(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """Only the host may resolve: the server's reason in one line."""
    shell.user_ns["rows"] = shell.user_ns["answer"]
    assert usage_error(shell, f"resolve {participant.id} rows")


def test_close(shell: InteractiveShell, hosted: NotebookCompetition) -> None:
    """`close ID` closes a competition the notebook hosts."""
    assert cs(shell, f"close {hosted.id}").status == "closed"


# -- widgets and competing -------------------------------------------------------------------------
def test_leaderboard_magic(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """`leaderboard ID` returns a live LeaderboardWidget."""
    cs(shell, f"submit {participant.id} pred")
    board = cs(shell, f"leaderboard {participant.id}")
    try:
        assert isinstance(board, LeaderboardWidget)
        assert len(board.board["entries"]) == 1
    finally:
        board.stop()
    assert "no competition 999999" in usage_error(shell, "leaderboard 999999")


def test_browse_magic(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """`browse` returns a browser over the notebook's variables."""
    browser = cs(shell, "browse")
    assert "pred" in browser.frames()


def test_compete_runs_and_stop(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """`@compete` runs on the open competition; `runs` lists it; `stop NAME` stops it."""
    shell.run_cell(
        "from crowdsource import compete\n"
        "@compete('classify')\n"
        "def always_a(c):\n"
        "    return c.template().assign(label='a')\n"
    )
    always_a = shell.user_ns["always_a"]
    assert always_a.wait(1, timeout=30)
    runs = cs(shell, "runs")
    assert runs.loc[runs["name"] == "always_a", "state"].tolist() == ["running"]
    assert always_a.results["state"].tolist() == ["scored"]
    assert repr(cs(shell, "stop always_a")) == "stopped 'always_a'"
    assert always_a.state == "stopped"
    assert "no function named 'always_a'" in usage_error(shell, "stop always_a")


def test_compete_again_replaces(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """Running a `@compete` cell again stops the previous version of the function."""
    from crowdsource import compete

    first = compete("classify", name="again", show=False)(lambda c: None)
    second = compete("classify", name="again", show=False)(lambda c: None)
    assert first.state == "stopped"
    assert second.state == "running"
    assert competing.running()["name"].tolist() == ["again"]


def test_compete_not_connected(shell: InteractiveShell) -> None:
    """`@compete` before connecting says to connect."""
    from crowdsource import compete

    with pytest.raises(UsageError, match="not connected"):
        compete("classify")(lambda c: None)


def test_compete_mistakes(shell: InteractiveShell) -> None:
    """A bare `@compete` or an unknown type is a one-line mistake."""
    from crowdsource import compete

    with pytest.raises(UsageError, match=r'write @compete\("classify"\)'):
        compete(lambda c: None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown competition type 'clasify'"):
        compete("clasify")


def test_compete_failure_reason_shown(
    shell: InteractiveShell, participant: NotebookCompetition
) -> None:
    """A rejected run shows the server's reason in the results (and the widget)."""
    from crowdsource import compete

    @compete("classify", name="half", show=False)
    def half(c: Any) -> pd.DataFrame:
        return c.template().assign(label="a").head(3)

    assert half.wait(1, timeout=30)
    assert "missing" in half.results["error"].iloc[0]
    assert "missing" in half.runs.value


# -- the embedded server ---------------------------------------------------------------------------
def test_serve_and_stop(shell: InteractiveShell) -> None:
    """`serve` starts a real server in a child process and connects as host; `--stop` ends it."""
    text = repr(cs(shell, "serve --as boss"))
    server = session.state().server
    assert server is not None and server.running
    assert text.endswith("connected as 'boss'")
    assert "already runs" in usage_error(shell, "serve")
    assert cs(shell, "competitions").empty
    assert repr(cs(shell, "serve --stop")).startswith("stopped the server")
    assert not server.running
    assert "not connected" in usage_error(shell, "competitions")


def test_embedded_server_dies_with_its_kernel() -> None:
    """A kernel killed at once (as nbval does) takes its embedded server and its files along."""
    code = (
        "from crowdsource.notebook.embedded import EmbeddedServer\n"
        "server = EmbeddedServer().start()\n"
        "print(server.url, server.workdir, flush=True)\n"
        "import time; time.sleep(120)\n"
    )
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert kernel.stdout is not None
    url, workdir = kernel.stdout.readline().split()
    assert requests.get(f"{url}/api/v1/competitions", timeout=5).ok
    kernel.kill()
    kernel.wait()
    assert _stops_answering(url, timeout=20)
    deadline = time.monotonic() + 10
    while Path(workdir).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(workdir).exists()


def _stops_answering(url: str, *, timeout: float) -> bool:
    """True once nothing answers at `url`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/api/v1/competitions", timeout=1)
        except requests.ConnectionError:
            return True
        time.sleep(0.1)
    return False


# -- identities and the embedded server's port -----------------------------------------------------


def test_register_twice_and_use(shell: InteractiveShell, sqlite_server: ServerProcess) -> None:
    """Two registrations are two saved identities; `use` switches; the same name again is
    refused with the way back to it."""
    first, second = unique("erin"), unique("frank")
    cs(shell, f"connect {sqlite_server.url}")
    cs(shell, f"register {first}")
    cs(shell, f"register {second}")
    assert f"`%crowdsource use {first}`" in usage_error(shell, f"register {first}")
    assert repr(cs(shell, f"use {first}")) == f"now acting as {first!r} on {sqlite_server.url}"
    assert session.client().me()["name"] == first
    assert "saved: " in usage_error(shell, "use nobody-at-all")


def test_a_stale_saved_token_connects_anonymously(
    shell: InteractiveShell, sqlite_server: ServerProcess
) -> None:
    """A token saved for this address that the server does not know (a new server at an old
    address) leaves the notebook connected, anonymous, and says why."""
    from crowdsource.client.config import Credentials, add_identity

    add_identity(Credentials(sqlite_server.url, "cs_" + "x" * 43, 99_999, unique("ghost")))
    text = repr(cs(shell, f"connect {sqlite_server.url}"))
    assert "is not known to this server" in text and "anonymous" in text
    cs(shell, f"register {unique('real')}")


def test_serve_elsewhere_when_8889_is_taken(shell: InteractiveShell) -> None:
    """With port 8889 taken, `serve` listens on another and prints the exact connect line,
    which works; the kernel's own identities switch with `use`."""
    import re
    import socket

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8889))
        holder.listen()
    except OSError:
        pass  # taken by something else already: just as good
    try:
        text = repr(cs(shell, "serve"))
        told = re.search(r"`%crowdsource connect (127\.0\.0\.1:(\d+))`", text)
        assert told and told.group(2) != "8889", text
        assert repr(cs(shell, f"connect {told.group(1)}")).endswith("as 'host'")
        cs(shell, "register bob")
        assert repr(cs(shell, "use host")).startswith("now acting as 'host'")
        assert session.client().me()["name"] == "host"
    finally:
        cs(shell, "serve --stop")
        holder.close()


# -- the pre-flight check --------------------------------------------------------------------------
def test_check_magic(shell: InteractiveShell, participant: NotebookCompetition) -> None:
    """`check ID VAR` passes a good frame and says the server's words of a bad one, unsent."""
    assert "30 rows checked" in repr(cs(shell, f"check {participant.id} pred"))
    shell.user_ns["partial"] = shell.user_ns["pred"].head(10)
    said = usage_error(shell, f"check {participant.id} partial")
    assert said == usage_error(shell, f"submit {participant.id} partial")
    assert "20 ids missing" in said
    assert session.identified_client().submissions(participant.id) == []


def test_compete_checks_before_submitting(
    shell: InteractiveShell, participant: NotebookCompetition
) -> None:
    """A competing function whose frame cannot fit is stopped before it submits."""
    from crowdsource import compete

    @compete("classify", name="nan", show=False)
    def nan(c: Any) -> pd.DataFrame:
        return c.template()

    assert nan.wait(1, timeout=30)
    run = nan.results.iloc[0]
    assert run["state"] == "not submitted"
    assert "found before submitting" in run["error"] and "(NaN)" in run["error"]
    assert session.identified_client().submissions(participant.id) == []
