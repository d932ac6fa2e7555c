"""Quick Example, client 2: post a dummy 'classify' competition, wait, print the leaderboards.

Does it twice, then exits. Start client1.py first so that someone competes.
The server URL comes from CROWDSOURCE_URL (default 127.0.0.1:8889).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import timedelta

import numpy as np
import pandas as pd

import crowdsource.client as CC

URL = os.environ.get("CROWDSOURCE_URL", "127.0.0.1:8889")


def dummy_competition(seed: int, rows: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A dataset of three features and a hidden 0/1 label that mostly follows x0."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1)
    features = rng.normal(size=(rows, 3))
    dataset = pd.DataFrame({"id": ids, "x0": features[:, 0], "x1": features[:, 1]})
    dataset["x2"] = features[:, 2]
    label = (features[:, 0] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return dataset, pd.DataFrame({"id": ids, "label": label})


def post_and_wait(client: CC.Client, round_no: int, entries: int, timeout: float) -> int:
    """Post one competition and pause until `entries` participants are on its board."""
    dataset, answer = dummy_competition(round_no + int(uuid.uuid4().int % 1000))
    competition = client.host(
        dataset,
        answer,
        type="classify",
        metric="accuracy",
        title=f"Dummy classify {round_no}",
        closes_at=timedelta(hours=1),
    )
    print(f"client2: posted competition {competition.id} ({competition.title})", flush=True)
    try:
        client.wait_for_leaderboard(competition.id, entries=entries, timeout=timeout)
    except CC.Timeout as exc:
        print(f"client2: {exc} (is client1.py running?)", flush=True)
    return competition.id


def print_leaderboards(client: CC.Client, posted: list[int]) -> None:
    """Print the leaderboards of the competitions posted so far."""
    boards = client.leaderboards()
    columns = ["competition_id", "rank", "participant", "score", "submissions"]
    boards = boards.loc[boards["competition_id"].isin(posted), columns]
    print(boards.to_string(index=False) if not boards.empty else "(no entries yet)", flush=True)


def main() -> int:
    """Register, post two competitions, print the leaderboards after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="competitions to post")
    parser.add_argument("--entries", type=int, default=2, help="participants to wait for")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait each")
    args = parser.parse_args()
    client = CC.Client(URL)
    client.register(f"client2-{uuid.uuid4().hex[:4]}", save=False)
    posted: list[int] = []
    for round_no in range(1, args.rounds + 1):
        posted.append(post_and_wait(client, round_no, args.entries, args.timeout))
        print(f"\nLeaderboards after round {round_no}:", flush=True)
        print_leaderboards(client, posted)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CC.CrowdsourceError as exc:
        print(f"client2: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
