"""What the event stream shows each listener: everyone sees what is public (names, scores,
boards, the host's text); what a participant sent (a failed submission's reason, which
quotes their labels, ids and column names) reaches that participant only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pandas as pd
import pytest
import websocket
from hypothesis import given
from hypothesis import strategies as st

from crowdsource.server.events import TYPES, Event
from crowdsource.server.handlers.events import seen_by
from crowdsource.server.live import PUBLIC
from crowdsource.server.storage.tables import Participant
from tests.api import Api, classify_data, events_url, split
from tests.support import ServerProcess


def secret_submissions(answer: pd.DataFrame, secret: str) -> list[pd.DataFrame]:
    """Predictions that fail, each quoting `secret` in its reason in another way: as a
    label, as a column name, as an id."""
    label = answer.copy()
    label.loc[label.index[:3], "label"] = secret
    column = answer.assign(**{secret: 1.0})
    ids = answer.copy()
    ids["id"] = ids["id"].astype(str)
    ids.loc[ids.index[0], "id"] = secret
    return [label, column, ids]


def listen(server: ServerProcess, comp: int, token: str | None, how: str) -> Any:
    """An event stream on one competition: anonymous, or with a token in the query or in the
    Authorization header."""
    query: dict[str, Any] = {"competition": comp}
    header = []
    if token and how == "query":
        query["token"] = token
    elif token:
        header = [f"Authorization: Bearer {token}"]
    ws = websocket.create_connection(events_url(server, **query), header=header, timeout=30)
    assert json.loads(ws.recv())["type"] == "hello"
    return ws


def messages_until(ws: Any, failures: int) -> list[str]:
    """The raw messages of a stream up to its `failures`-th submission.failed event."""
    seen: list[str] = []
    ws.settimeout(60)
    while sum('"submission.failed"' in m for m in seen) < failures:
        seen.append(ws.recv())
    ws.close()
    return seen


def test_a_failed_submissions_reason_reaches_its_owner_only(server: ServerProcess) -> None:
    """Alice's submissions fail with reasons quoting what she sent: her own streams (token in
    the query or the header) get the reasons; an anonymous stream and Bob's get the failures
    without them, and never her text."""
    dataset, answer = classify_data(30)
    host, alice, bob = Api(server), Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )["id"]
    streams = {
        "anonymous": listen(server, comp, None, ""),
        "bob (query)": listen(server, comp, bob.token, "query"),
        "bob (header)": listen(server, comp, bob.token, "header"),
        "alice (query)": listen(server, comp, alice.token, "query"),
        "alice (header)": listen(server, comp, alice.token, "header"),
    }
    secret = f"secret-{uuid.uuid4().hex}"
    bad = secret_submissions(answer, secret)
    for frame in bad:
        r = alice.post(
            f"/competitions/{comp}/submissions",
            params={"wait": "false"},
            json={"predictions": split(frame)},
        )
        assert r.status_code == 202, r.text
    assert alice.submit(comp, answer).status_code == 201
    for who, ws in streams.items():
        seen = messages_until(ws, len(bad))
        failed = [json.loads(m)["data"] for m in seen if '"submission.failed"' in m]
        assert all(f["participant"]["id"] == alice.id for f in failed)
        if who.startswith("alice"):
            assert all(secret in f["reason"] for f in failed), who
        else:
            assert all("reason" not in f for f in failed), who
            assert not [m for m in seen if secret in m], who


@pytest.mark.parametrize(
    ("token", "header"),
    [
        ("cs_not-a-token", "token"),
        ("", "Authorization: Basic abc"),
        ("", "Authorization: Bearer "),
        ("", "Authorization: Bearer cs_not-a-token"),
    ],
)
def test_a_bad_token_on_the_stream_is_refused(
    sqlite_server: ServerProcess, token: str, header: str
) -> None:
    """A token that is not one, in the query or the header, is a JSON 401 saying what to do."""
    query = {"token": token} if token else {}
    headers = [header] if header.startswith("Authorization") else []
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(events_url(sqlite_server, **query), header=headers)
    assert refused.value.status_code == 401
    body = json.loads(refused.value.resp_body)
    assert body["error"] == "unauthorized" and body["message"]


def test_every_event_type_has_a_decision() -> None:
    """Each event type the server publishes says which of its fields everyone may see."""
    assert set(PUBLIC) == set(TYPES)


@given(
    kind=st.sampled_from(sorted(TYPES)),
    extra=st.dictionaries(st.text(min_size=1), st.text(), max_size=5),
    viewer=st.sampled_from([None, 1, 2]),
)
def test_a_listener_sees_the_public_fields_or_its_own_event(
    kind: str, extra: dict[str, str], viewer: int | None
) -> None:
    """Participant 1's event: whole for participant 1; for anyone else, only the fields
    public for its type (any field added later stays hidden until it is declared)."""
    data = {**extra, "participant": {"id": 1, "name": "alice"}}
    event = Event(kind, 5, data)
    seen = seen_by(event, None if viewer is None else Participant(id=viewer, name="x"))
    public = PUBLIC[kind]
    if viewer == 1 or public is None:
        assert seen == event
    else:
        assert set(seen.data) <= public and seen.data.items() <= event.data.items()
