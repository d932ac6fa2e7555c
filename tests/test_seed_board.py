"""A 10,000-entry board seeded straight into the database is served as the server ranks it."""

from __future__ import annotations

import io
import time
from pathlib import Path

from tests.api import Api, classify_data, probabilities
from tests.support import ServerProcess, seed_board

CLASSES = ("a", "b", "c")


def parquet(df: object) -> bytes:
    """A frame as Parquet bytes."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)  # type: ignore[attr-defined]
    return buf.getvalue()


def test_a_seeded_board_of_10000_is_served_ranked_and_counted(
    database: str, tmp_path: Path
) -> None:
    """Seeded entries and a real one share the board: ranks follow scores (ties share one),
    every submission is counted, and a new submission updates the seeded board."""
    server = ServerProcess(database, tmp_path).start()
    host, alice = Api(server), Api(server)
    dataset, answer = classify_data(classes=CLASSES)
    cid = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer)["id"]
    guess = probabilities(dataset["id"].to_numpy(), CLASSES, seed=1)
    assert alice.submit(cid, guess).status_code == 201
    server.stop()
    t0 = time.monotonic()
    ids = seed_board(db=database, competition_id=cid, predictions=parquet(guess))
    print(f"seeded 10,000 entries in {time.monotonic() - t0:.1f} s")
    server.start()

    entries = alice.board(cid)["entries"]
    assert len(entries) == 10_001 and sum(e["submissions"] for e in entries) == 10_001
    assert {e["participant"]["id"] for e in entries} == {alice.id, *ids}
    scores = [e["score"] for e in entries]
    assert scores == sorted(scores)  # log loss: lower is better
    for entry in entries:  # one more than the entries with a better score
        assert entry["rank"] == 1 + sum(s < entry["score"] for s in scores[: entry["rank"]])
    assert entries[-1]["rank"] == entries[-2]["rank"]  # the last two seeded share a score
    assert entries[0]["name"] == "seeded-00000" and entries[0]["rank"] == 1

    assert alice.submit(cid, guess).status_code == 201
    mine = counted(alice, cid, submissions=2)
    assert mine["rank"] == 1 + sum(s < mine["score"] for s in scores)
    server.stop()


def counted(viewer: Api, cid: int, *, submissions: int) -> dict:
    """The viewer's own entry once the board counts `submissions` of theirs (on PostgreSQL
    a board read right after the 201 may precede the change's notification)."""
    deadline = time.monotonic() + 30
    while True:
        entries = viewer.board(cid)["entries"]
        mine = next(e for e in entries if e["participant"]["id"] == viewer.id)
        if mine["submissions"] == submissions or time.monotonic() > deadline:
            assert mine["submissions"] == submissions
            return dict(mine)
        time.sleep(0.1)
