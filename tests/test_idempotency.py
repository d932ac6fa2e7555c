"""Idempotency-Key: a key is its participant's, for one competition. Sent again to the same
competition it answers the submission it made; sent to another competition it is a 409 that
says so, and nothing is stored; sent to two competitions at once, one wins and one is a 409."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api import Api
from tests.support import ServerProcess

BODY = {"predictions": {"columns": ["id", "y"], "data": [[i, 1.0 * i] for i in range(10)]}}


def regress_round(host: Api) -> int:
    """A small regression competition with no daily limit; returns its id."""
    data = {"columns": ["id", "x"], "data": [[i, i] for i in range(10)]}
    answer = {"columns": ["id", "y"], "data": [[i, 2.0 * i] for i in range(10)]}
    return int(host.host(type="regress", targets=["y"], dataset=data, answer=answer)["id"])


def send(me: Api, cid: int, key: str, *, wait: bool = True) -> requests.Response:
    """Submit BODY with an Idempotency-Key."""
    return me.post(
        f"/competitions/{cid}/submissions",
        json=BODY,
        headers={"Idempotency-Key": key},
        params={"wait": str(wait).lower()},
    )


def mine(me: Api, cid: int) -> list[int]:
    """The ids of my submissions to one competition."""
    r = me.get(f"/competitions/{cid}/submissions")
    assert r.status_code == 200, r.text
    return [s["id"] for s in r.json()["submissions"]]


@pytest.mark.parametrize("wait", [True, False])
def test_a_key_reused_on_another_competition_is_a_409(server: ServerProcess, wait: bool) -> None:
    """The second competition's answer is a 409 naming the first; nothing is stored there,
    and the key still answers its own submission on the first."""
    host, me = Api(server), Api(server)
    first, second = regress_round(host), regress_round(host)
    key = uuid.uuid4().hex
    made = send(me, first, key, wait=wait)
    assert made.status_code == (201 if wait else 202), made.text
    reused = send(me, second, key, wait=wait)
    assert reused.status_code == 409, reused.text
    body = reused.json()
    assert body["error"] == "conflict"
    assert f"used for a submission to competition {first}" in body["message"]
    assert "use a new key" in body["message"]
    assert mine(me, second) == []
    again = send(me, first, key, wait=wait)
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert mine(me, first) == [made.json()["id"]]


def race(me: Api, cids: list[int], key: str, *, wait: bool) -> list[tuple[int, requests.Response]]:
    """Send one key to each of `cids` at once; each competition with its answer."""
    start = threading.Barrier(len(cids))
    answers: list[Any] = [None] * len(cids)

    def one(i: int) -> None:
        session = requests.Session()
        session.headers.update(me.session.headers)
        start.wait()
        answers[i] = session.post(
            f"{me.url}/api/v1/competitions/{cids[i]}/submissions",
            json=BODY,
            headers={"Idempotency-Key": key},
            params={"wait": str(wait).lower()},
            timeout=60,
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(cids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return list(zip(cids, answers, strict=True))


def test_one_key_sent_to_two_competitions_at_once(server: ServerProcess) -> None:
    """Round after round, one key goes to four competitions at once: one is accepted, the
    others are 409s naming it (never a 500), and exactly one submission is stored."""
    host, me = Api(server), Api(server)
    cids = [regress_round(host) for _ in range(4)]
    for n in range(8):
        answers = race(me, cids, uuid.uuid4().hex, wait=n % 2 == 1)
        statuses = Counter(r.status_code for _, r in answers)
        accepted = 201 if n % 2 else 202
        assert statuses == {accepted: 1, 409: len(cids) - 1}, [r.text for _, r in answers]
        winner = next(cid for cid, r in answers if r.status_code == accepted)
        refusals = [r.json()["message"] for _, r in answers if r.status_code == 409]
        assert all(f"competition {winner};" in message for message in refusals)
    assert len(me.get("/submissions").json()["submissions"]) == 8


@pytest.mark.parametrize("wait", [True, False])
def test_one_key_sent_to_one_competition_at_once(server: ServerProcess, wait: bool) -> None:
    """Six copies of one keyed submission at once: one is made, the others answer it (200)."""
    host, me = Api(server), Api(server)
    cid = regress_round(host)
    answers = race(me, [cid] * 6, uuid.uuid4().hex, wait=wait)
    assert Counter(r.status_code for _, r in answers) == {201 if wait else 202: 1, 200: 5}
    assert {r.json()["id"] for _, r in answers} == set(mine(me, cid))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), st.booleans()), min_size=1, max_size=8
    )
)
def test_keys_behave_like_the_model(server: ServerProcess, steps: list[Any]) -> None:
    """Any sequence of (key, competition, wait): a new key makes a submission, the same key
    on the same competition answers it again, on another competition it is a 409."""
    host, me = Api(server), Api(server)
    cids = [regress_round(host) for _ in range(2)]
    keys = [uuid.uuid4().hex for _ in range(3)]
    made: dict[int, tuple[int, int]] = {}  # key index -> (competition index, submission id)
    for k, c, wait in steps:
        r = send(me, cids[c], keys[k], wait=wait)
        if k not in made:
            assert r.status_code == (201 if wait else 202), r.text
            made[k] = (c, r.json()["id"])
        elif made[k][0] == c:
            assert r.status_code == 200 and r.json()["id"] == made[k][1], r.text
        else:
            assert r.status_code == 409, r.text
            assert f"competition {cids[made[k][0]]}" in r.json()["message"]
    for c, cid in enumerate(cids):
        assert sorted(mine(me, cid)) == sorted(i for cc, i in made.values() if cc == c)
