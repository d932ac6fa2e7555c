"""Quick Example, client 1: two dummy functions compete in every 'classify' competition.

Each function registers as its own participant, so both show on the leaderboards. Runs
until killed (Ctrl-C / SIGTERM), or until each function has answered `--rounds N` times.
The server URL comes from CROWDSOURCE_URL (default 127.0.0.1:8889).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from types import FrameType

import numpy as np
import pandas as pd

import crowdsource.client as CC

URL = os.environ.get("CROWDSOURCE_URL", "127.0.0.1:8889")


def say(line: str) -> None:
    """Print one whole line (the two functions run on threads of their own)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _labels(competition: CC.Competition) -> list:
    """The two labels to choose between."""
    return list(competition.classes or [0, 1])[:2] or [0, 1]


def foo1(competition: CC.Competition) -> pd.DataFrame:
    """Guess the label from whether the first numeric feature is above its median."""
    say(f"foo1: answering competition {competition.id}")
    data = competition.dataset.set_index(competition.id_column)
    feature = data.select_dtypes("number").iloc[:, 0]
    low, high = _labels(competition)
    answer = competition.template()
    answer[competition.targets[0]] = np.where(feature.to_numpy() > feature.median(), high, low)
    return answer


def foo2(competition: CC.Competition) -> pd.DataFrame:
    """Guess labels at random."""
    say(f"foo2: answering competition {competition.id}")
    answer = competition.template()
    rng = np.random.default_rng(competition.id)
    answer[competition.targets[0]] = rng.choice(_labels(competition), size=len(answer))
    return answer


def report(result: CC.RunResult) -> None:
    """Print what one run gave."""
    if result.ok:
        say(
            f"{result.function}: competition {result.competition_id} scored {result.score:.3f}"
            f" (rank {result.rank})"
        )
    else:
        say(f"{result.function}: competition {result.competition_id} failed: {result.error}")


def participant(name: str) -> CC.Client:
    """A client registered as a new participant named after the function."""
    client = CC.Client(URL)
    client.register(f"client1-{name}-{uuid.uuid4().hex[:4]}", save=False)
    return client


def main() -> int:
    """Register both functions and compete until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=0, help="exit after N runs per function")
    args = parser.parse_args()
    competitors = [
        participant(fn.__name__).compete("classify", fn, on_result=report) for fn in (foo1, foo2)
    ]

    def stop(signum: int, frame: FrameType | None) -> None:
        for competitor in competitors:
            competitor.stop(timeout=1)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"client1: foo1 and foo2 compete in 'classify' on {URL}", flush=True)
    for competitor in competitors:
        if args.rounds:
            competitor.wait(args.rounds)
        else:
            competitor.join()
    stop(0, None)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CC.CrowdsourceError as exc:
        print(f"client1: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
