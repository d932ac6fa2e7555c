"""Teams over HTTP, on real servers (SQLite and PostgreSQL): one board entry and one daily
quota per team, merges that keep every submission, and join codes that stay secret."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import crowdsource.client as CC
from crowdsource.notebook import session
from crowdsource.server.storage.engine import migrate
from tests import test_cli as cli
from tests import test_magics as magic
from tests import test_managers as managers
from tests.api import Api, classify_data, probabilities, split
from tests.support import ServerProcess, database_at, run
from tests.test_cli import env  # noqa: F401 - the fixture: a CLI environment for a server
from tests.test_magics import hosted, shell  # noqa: F401 - fixtures: an IPython shell, a host

CLASSES = ("a", "b", "c")


@pytest.fixture
def contest(server: ServerProcess) -> dict[str, Any]:
    """A fresh classify competition on the session's server, its host and its answer."""
    dataset, answer = classify_data(60)
    host = Api(server)
    comp = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer)
    return {"server": server, "host": host, "id": comp["id"], "answer": answer}


def host_with(server: ServerProcess, **spec: Any) -> tuple[Api, int, pd.DataFrame]:
    """A host and a classify competition with extra settings."""
    dataset, answer = classify_data(60)
    host = Api(server)
    comp = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer, **spec)
    return host, comp["id"], answer


def guess(answer: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Random class probabilities: a poor score."""
    return probabilities(answer["id"].to_numpy(), CLASSES, seed)


def perfect(answer: pd.DataFrame) -> pd.DataFrame:
    """The answer itself, as probabilities: the best score."""
    onehot = pd.get_dummies(answer.set_index("id")["label"]).astype(float)
    return onehot.reindex(columns=list(CLASSES), fill_value=0.0).reset_index()


def make_team(api: Api, cid: int, name: str) -> dict[str, Any]:
    """Make a team; fails the test if refused."""
    r = api.post(f"/competitions/{cid}/teams", json={"name": name})
    assert r.status_code == 201, r.text
    return dict(r.json())


def join(api: Api, cid: int, code: str) -> Any:
    """Ask to join a team by its code."""
    return api.post(f"/competitions/{cid}/teams/join", json={"code": code})


def scored(api: Api, cid: int, frame: pd.DataFrame) -> dict[str, Any]:
    """Submit; fails the test unless it is scored."""
    r = api.submit(cid, frame)
    assert r.status_code == 201 and r.json()["state"] == "scored", r.text
    return dict(r.json())


def test_a_team_has_one_board_entry_with_its_members_best_score(contest) -> None:
    """Two members submit; the board shows the team once, named, with the better score."""
    server, cid, answer = contest["server"], contest["id"], contest["answer"]
    alice, bob, carol = Api(server), Api(server), Api(server)
    team = make_team(alice, cid, "Owls")
    assert join(bob, cid, team["code"]).status_code == 201
    worse = scored(alice, cid, guess(answer, 1))
    best = scored(bob, cid, perfect(answer))
    scored(carol, cid, guess(answer, 2))

    entries = alice.board(cid)["entries"]
    assert len(entries) == 2
    owls = next(e for e in entries if e["team"])
    assert owls["name"] == "Owls" and owls["score"] == best["public_score"]
    assert owls["score"] < worse["public_score"] and owls["submissions"] == 2 and owls["rank"] == 1
    assert [m["name"] for m in owls["team"]["members"]] == [alice.name, bob.name]
    solo = next(e for e in entries if not e["team"])
    assert solo["name"] == carol.name and solo["participant"]["id"] == carol.id
    assert best["rank"] == 1 and scored(alice, cid, guess(answer, 3))["rank"] == 1


def test_members_share_one_daily_quota(server: ServerProcess) -> None:
    """The limit counts the whole team's submissions; the refusal says it is the team's."""
    _, cid, answer = host_with(server, daily_limit=2)
    alice, bob = Api(server), Api(server)
    join(bob, cid, make_team(alice, cid, "Quota")["code"])
    assert scored(alice, cid, guess(answer, 1))["remaining_today"] == 1
    assert scored(bob, cid, guess(answer, 2))["remaining_today"] == 0
    refused = alice.submit(cid, guess(answer, 3))
    assert refused.status_code == 429
    assert "your team used all 2 submissions" in refused.json()["message"]
    assert "resets at" in refused.json()["message"]


def test_members_submitting_at_once_never_pass_the_shared_limit(server: ServerProcess) -> None:
    """Three members send 9 submissions at the same moment against a limit of 4: exactly 4
    are accepted, whichever member sent them (the team's quota is checked in turn)."""
    _, cid, answer = host_with(server, daily_limit=4)
    alice, bob, carol = Api(server), Api(server), Api(server)
    code = make_team(alice, cid, "Rush")["code"]
    join(bob, cid, code)
    join(carol, cid, code)
    senders = [alice, bob, carol] * 3
    with ThreadPoolExecutor(len(senders)) as pool:
        answers = list(
            pool.map(lambda a: a[1].submit(cid, guess(answer, a[0])), enumerate(senders))
        )
    assert sorted(r.status_code for r in answers) == [201] * 4 + [429] * 5
    (entry,) = alice.board(cid)["entries"]
    assert entry["submissions"] == 4


def test_two_servers_on_one_postgresql_keep_the_shared_limit(pg_url, new_server) -> None:
    """Members sending at once through two server processes (one PostgreSQL) still get
    exactly the limit between them: the team's advisory lock orders their checks."""
    one, two = new_server(pg_url), new_server(pg_url)  # (servers of one database share a secret)
    _, cid, answer = host_with(one, daily_limit=4)
    alice, bob = Api(one), Api(one)
    join(bob, cid, make_team(alice, cid, "Across")["code"])
    bob.url = two.url
    senders = [alice, bob] * 5
    with ThreadPoolExecutor(len(senders)) as pool:
        answers = list(
            pool.map(lambda a: a[1].submit(cid, guess(answer, a[0])), enumerate(senders))
        )
    assert sorted(r.status_code for r in answers) == [201] * 4 + [429] * 6
    assert alice.board(cid)["entries"][0]["submissions"] == 4


def test_joining_keeps_every_submission_and_merges_the_entries(contest) -> None:
    """Submissions made alone before joining count for the team: one entry, all counted."""
    server, cid, answer = contest["server"], contest["id"], contest["answer"]
    alice, bob = Api(server), Api(server)
    scored(alice, cid, guess(answer, 1))
    scored(alice, cid, guess(answer, 2))
    best = scored(bob, cid, perfect(answer))
    assert len(alice.board(cid)["entries"]) == 2

    code = make_team(alice, cid, "Merged")["code"]
    joined = join(bob, cid, code)
    assert joined.status_code == 201
    assert [m["name"] for m in joined.json()["members"]] == [alice.name, bob.name]

    (entry,) = alice.board(cid)["entries"]
    assert entry["name"] == "Merged" and entry["submissions"] == 3
    assert entry["score"] == best["public_score"]
    mine = bob.get(f"/competitions/{cid}/submissions").json()["submissions"]
    assert [s["id"] for s in mine] == [best["id"]] and mine[0]["rank"] == 1
    assert join(bob, cid, code).status_code == 200  # joining again changes nothing


def test_a_merge_over_the_daily_limit_is_refused(server: ServerProcess) -> None:
    """Two who used 4 of a limit of 3 between them today cannot merge until it resets."""
    _, cid, answer = host_with(server, daily_limit=3)
    alice, bob = Api(server), Api(server)
    for seed in (1, 2):
        scored(alice, cid, guess(answer, seed))
        scored(bob, cid, guess(answer, seed + 10))
    r = join(bob, cid, make_team(alice, cid, "Too many")["code"])
    assert r.status_code == 409
    message = r.json()["message"]
    assert "4 submissions today" in message and "daily limit of 3" in message
    assert "join after" in message
    assert bob.get(f"/competitions/{cid}/teams/mine").status_code == 404
    assert len(alice.board(cid)["entries"]) == 2


def test_a_merge_within_the_daily_limit_is_allowed(server: ServerProcess) -> None:
    """Exactly the limit between them is fine; the team then has none left today."""
    _, cid, answer = host_with(server, daily_limit=2)
    alice, bob = Api(server), Api(server)
    scored(alice, cid, guess(answer, 1))
    scored(bob, cid, guess(answer, 2))
    assert join(bob, cid, make_team(alice, cid, "Exactly")["code"]).status_code == 201
    assert alice.submit(cid, guess(answer, 3)).status_code == 429


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"code": "not-a-code"}, 404, "ask a member of the team"),
        ({"code": "x" * 5000}, 404, "ask a member of the team"),
        ({"code": ""}, 400, "'code' must be the join code"),
        ({"code": 7}, 400, "'code' must be the join code"),
        ({}, 400, "'code' must be the join code"),
        ([1, 2], 400, "'code' must be the join code"),
    ],
)
def test_a_wrong_code_says_what_to_do(contest, body: Any, status: int, says: str) -> None:
    """A wrong or missing code is a 4xx whose message says what to do, never a 500."""
    api = Api(contest["server"])
    r = api.post(f"/competitions/{contest['id']}/teams/join", json=body)
    assert r.status_code == status and says in r.json()["message"], r.text


def test_a_code_opens_its_own_competitions_team_only(server: ServerProcess) -> None:
    """A code from another competition does not open a team here."""
    _, first, _ = host_with(server)
    _, second, _ = host_with(server)
    alice, bob = Api(server), Api(server)
    code = make_team(alice, first, "Elsewhere")["code"]
    r = join(bob, second, code)
    assert r.status_code == 404 and f"no team of competition {second}" in r.json()["message"]


def test_teams_close_with_the_competition(contest) -> None:
    """After close, nobody makes or joins a team."""
    server, cid, host = contest["server"], contest["id"], contest["host"]
    alice, bob = Api(server), Api(server)
    code = make_team(alice, cid, "Late")["code"]
    assert host.post(f"/competitions/{cid}/close").status_code == 200
    r = join(bob, cid, code)
    assert r.status_code == 409 and "teams can no longer be made or joined" in r.json()["message"]
    assert bob.post(f"/competitions/{cid}/teams", json={"name": "Later"}).status_code == 409


def test_join_codes_are_random_and_shown_to_members_only(contest) -> None:
    """Codes are long and distinct; boards and strangers never see them; members do."""
    server, cid, answer = contest["server"], contest["id"], contest["answer"]
    teams = [make_team(Api(server), cid, f"Team {i}") for i in range(4)]
    codes = {t["code"] for t in teams}
    assert len(codes) == 4 and all(len(c) >= 20 for c in codes)
    member, stranger = Api(server), Api(server)
    join(member, cid, teams[0]["code"])
    scored(member, cid, guess(answer, 1))
    seen = [
        member.get(f"/competitions/{cid}/leaderboard").text,
        member.get("/leaderboards").text,
        member.get(f"/competitions/{cid}").text,
        stranger.get(f"/competitions/{cid}/teams/mine").text,
    ]
    assert not any(code in text for code in codes for text in seen)
    assert member.get(f"/competitions/{cid}/teams/mine").json()["code"] == teams[0]["code"]
    r = stranger.get(f"/competitions/{cid}/teams/mine")
    assert r.status_code == 404 and "team join" in r.json()["message"]


def test_one_team_per_competition_within_the_hosts_size_limit(server: ServerProcess) -> None:
    """A member cannot make or join another team; a full team refuses; the host stays out."""
    host, cid, _ = host_with(server, max_team_size=2)
    alice, bob, carol = Api(server), Api(server), Api(server)
    code = make_team(alice, cid, "Pair")["code"]
    other = make_team(carol, cid, "Other")["code"]
    assert join(bob, cid, code).status_code == 201
    full = join(Api(server), cid, code)
    assert full.status_code == 409 and "max_team_size" in full.json()["message"]
    again = bob.post(f"/competitions/{cid}/teams", json={"name": "Mine"})
    assert again.status_code == 409 and "in team 'Pair'" in again.json()["message"]
    assert join(bob, cid, other).status_code == 409
    taken = Api(server).post(f"/competitions/{cid}/teams", json={"name": "Pair"})
    assert taken.status_code == 409 and "choose another name" in taken.json()["message"]
    assert host.post(f"/competitions/{cid}/teams", json={"name": "H"}).status_code == 403
    assert host.get(f"/competitions/{cid}").json()["max_team_size"] == 2


def test_a_disqualified_member_hides_the_team_and_cannot_join(contest) -> None:
    """A team stands or falls together; a disqualified participant joins no team."""
    server, cid, host, answer = contest["server"], contest["id"], contest["host"], contest["answer"]
    alice, bob, carol = Api(server), Api(server), Api(server)
    code = make_team(alice, cid, "Together")["code"]
    join(bob, cid, code)
    scored(alice, cid, guess(answer, 1))
    scored(carol, cid, guess(answer, 2))
    r = host.post(f"/competitions/{cid}/disqualified", json={"participant": bob.id, "reason": "x"})
    assert r.status_code == 201, r.text
    assert [e["name"] for e in host.board(cid)["entries"]] == [carol.name]
    r = host.post(
        f"/competitions/{cid}/disqualified", json={"participant": carol.id, "reason": "y"}
    )
    assert r.status_code == 201, r.text
    refused = join(carol, cid, code)
    assert (
        refused.status_code == 403 and "disqualified from competition" in refused.json()["message"]
    )


@pytest.mark.parametrize("size", [0, -1, 1001, "5", 2.5, True])
def test_a_bad_team_size_is_refused(server: ServerProcess, size: Any) -> None:
    """max_team_size is a whole number from 1 to 1000."""
    dataset, answer = classify_data(20)
    r = Api(server).post(
        "/competitions",
        json={
            "title": "t",
            "type": "classify",
            "targets": ["label"],
            "dataset": split(dataset),
            "answer": split(answer),
            "max_team_size": size,
        },
    )
    assert r.status_code == 400 and "'max_team_size' must be a whole number" in r.json()["message"]


def test_a_team_needs_a_token_and_a_name(contest) -> None:
    """Anonymous callers and empty names are told what to send."""
    server, cid = contest["server"], contest["id"]
    anonymous = Api(server)
    anonymous.session.headers.pop("Authorization")
    assert anonymous.post(f"/competitions/{cid}/teams", json={"name": "x"}).status_code == 401
    r = Api(server).post(f"/competitions/{cid}/teams", json={"name": " "})
    assert r.status_code == 400 and "'name' must be a non-empty string" in r.json()["message"]
    assert Api(server).post("/competitions/99999/teams", json={"name": "x"}).status_code == 404


def put_finals(api: Api, cid: int, ids: list[int]) -> dict[str, Any]:
    """Select final submissions; fails the test if refused."""
    r = api.session.put(f"{api.url}/api/v1/competitions/{cid}/final", json={"submissions": ids})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_team_selects_its_final_submissions_together(server: ServerProcess) -> None:
    """Finals are chosen among all members' submissions; any member's selection is the
    team's; the private board ranks the team once, by its finals."""
    host, cid, answer = host_with(server, public_fraction=0.5, final_submissions=1)
    alice, bob = Api(server), Api(server)
    scored(bob, cid, guess(answer, 7))
    put_finals(bob, cid, [])  # a joiner's own selection is dropped on joining
    join(bob, cid, make_team(alice, cid, "Finalists")["code"])
    best = scored(alice, cid, perfect(answer))
    poor = scored(bob, cid, guess(answer, 8))
    default = alice.get(f"/competitions/{cid}/final").json()
    assert default == {**default, "selected": False, "submissions": [best["id"]]}

    chosen = put_finals(bob, cid, [poor["id"]])
    assert chosen["selected"] and chosen["submissions"] == [poor["id"]]
    assert alice.get(f"/competitions/{cid}/final").json()["submissions"] == [poor["id"]]
    assert host.post(f"/competitions/{cid}/close").status_code == 200

    (entry,) = alice.board(cid, "private")["entries"]
    mine = bob.get(f"/submissions/{poor['id']}").json()
    assert entry["name"] == "Finalists" and entry["score"] == mine["private_score"]
    received = {
        s["id"]: s["final"]
        for s in host.get(f"/competitions/{cid}/submissions").json()["submissions"]
    }
    assert received[poor["id"]] and not received[best["id"]]


# -- the Python client --------------------------------------------------------------------------


def client_for(server: ServerProcess) -> CC.Client:
    """A client registered as a fresh participant (token kept in memory)."""
    client = CC.Client(server.url, progress=False)
    client.register(f"c-{uuid.uuid4().hex[:12]}", save=False)
    return client


def test_the_client_makes_joins_and_shows_a_team(server: ServerProcess) -> None:
    """create_team, join_team and team, keyword-only; the leaderboard frame names the team."""
    host = client_for(server)
    dataset, answer = classify_data(40)
    comp = host.host(dataset, answer, type="classify", title="teams", max_team_size=3)
    assert comp.max_team_size == 3
    alice, bob = client_for(server), client_for(server)
    team = alice.create_team(competition=comp.id, name="Client team")
    assert isinstance(team, CC.Team) and team.code in str(team)
    joined = bob.join_team(competition=comp.id, code=team.code)
    assert joined.member_names == [alice.participant["name"], bob.participant["name"]]
    assert bob.team(competition=comp.id).code == team.code
    bob.submit(comp.id, perfect(answer))
    board = alice.leaderboard(comp.id)
    assert board["participant"].tolist() == ["Client team"]
    assert board["members"].tolist() == [", ".join(joined.member_names)]
    with pytest.raises(TypeError):
        alice.team(comp.id)  # type: ignore[misc]
    with pytest.raises(CC.NotFound, match="ask a member of the team"):
        client_for(server).join_team(competition=comp.id, code="wrong")
    with pytest.raises(CC.NotFound, match="team create"):
        client_for(server).team(competition=comp.id)


# -- the command line ---------------------------------------------------------------------------


def test_the_command_line_makes_joins_and_shows_a_team(env, tmp_path) -> None:  # noqa: F811
    """`crowdsource team create/join/show`: the creator shares the printed command."""
    cid = cli.hosted(env, tmp_path)
    alice = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "alice")}
    bob = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "bob")}
    cli.ok(alice, "register", f"alice-{uuid.uuid4().hex[:8]}")
    cli.ok(bob, "register", f"bob-{uuid.uuid4().hex[:8]}")
    made = cli.ok(alice, "team", "create", str(cid), "Command line")
    assert "team 'Command line'" in made and "join code: " in made
    code = json.loads(cli.ok(alice, "team", "show", str(cid), "--json"))["code"]
    assert f"crowdsource team join {cid} {code}" in made
    joined = json.loads(cli.ok(bob, "team", "join", str(cid), code.upper(), "--json"))
    assert len(joined["members"]) == 2 and joined["code"] == code
    assert "members (2 of at most 5)" in cli.ok(bob, "team", "show", str(cid))
    assert "ask a member of the team" in cli.fails(bob, "team", "join", str(cid), "nope")
    stranger = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "carol")}
    cli.ok(stranger, "register", f"carol-{uuid.uuid4().hex[:8]}")
    assert "team create" in cli.fails(stranger, "team", "show", str(cid))


# -- the notebook ---------------------------------------------------------------------------------


def test_the_magics_make_join_and_show_a_team(shell, hosted) -> None:  # noqa: F811
    """`%crowdsource team create/join/show` in a real IPython shell; mistakes are one line."""
    magic.cs(shell, f"register {magic.unique('alice')}")
    made = str(magic.cs(shell, f"team create {hosted.id} Notebook"))
    code = session.client().team(competition=hosted.id).code
    assert "team 'Notebook'" in made and f"%crowdsource team join {hosted.id} {code}" in made
    magic.cs(shell, f"register {magic.unique('bob')}")
    assert "2/5 members" in str(magic.cs(shell, f"team join {hosted.id} {code}"))
    assert code in str(magic.cs(shell, f"team show {hosted.id}"))
    wrong = magic.usage_error(shell, f"team join {hosted.id} wrong")
    assert "ask a member of the team" in wrong and "`%crowdsource team show" in wrong
    assert "%crowdsource team create" in magic.usage_error(shell, f"team create {hosted.id}")
    assert "no competition 99999" in magic.usage_error(shell, "team show 99999")


# -- the rule, as a property (in-process managers, in-memory SQLite) ------------------------------

PEOPLE = 4
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.integers(0, PEOPLE - 1),
            st.lists(st.sampled_from("ab"), min_size=10, max_size=10),
        ),
        st.tuples(st.just("join"), st.integers(1, PEOPLE - 1), st.just([])),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(plan=steps)
def test_the_board_is_the_best_of_each_teams_submissions_whenever_members_join(plan) -> None:
    """Person 0 makes a team; others submit and join in any order: the public board then
    has one entry per team or lone participant, the best of all its members' scores, and
    counts every submission, as if they had been together from the start."""

    async def body() -> None:
        async with managers.world() as w:
            host = await w.person("host")
            cid = (await w.host(host))["id"]
            people = [await w.person(f"p{i}") for i in range(PEOPLE)]
            code = (await w.m.teams.create(cid, people[0], "T"))["code"]
            members = {0}
            scores: dict[int, list[float]] = {}
            for action, who, labels in plan:
                if action == "join":
                    await w.m.teams.join(cid, people[who], code)
                    members.add(who)
                else:
                    sub, _ = await w.submit(people[who], cid, labels)
                    scores.setdefault(who, []).append(sub["public_score"])
            board = await w.m.leaderboards.board(cid, board="public", viewer=None)
            got = {e["name"]: (e["score"], e["submissions"]) for e in board["entries"]}
            team = [s for who in members for s in scores.get(who, [])]
            want = {f"p{who}": (max(s), len(s)) for who, s in scores.items() if who not in members}
            if team:
                want["T"] = (max(team), len(team))
            assert got == want

    run(body())


def test_a_database_before_teams_upgrades_in_place(database: str) -> None:
    """A database of the schema before teams (revision 0002) gets `max_team_size` 5 on its
    competitions and empty team tables, on SQLite and PostgreSQL."""
    engine = database_at(database, "0002")
    migrate(engine)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT max_team_size FROM competitions")).scalar_one()
        teams = conn.execute(text("SELECT count(*) FROM teams")).scalar_one()
    engine.dispose()
    assert (size, teams) == (5, 0)
