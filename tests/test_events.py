"""The event bus among server processes on one machine (Unix datagram sockets)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crowdsource.server.events import DATAGRAM_LIMIT, Event, SocketEventBus
from tests.support import run


async def exchange(folder: Path, events: list[Event]) -> tuple[list[Event], list[Event]]:
    """Publish events on one bus; what it and a second bus in the same folder deliver."""
    here, there = SocketEventBus(folder), SocketEventBus(folder)
    mine: list[Event] = []
    theirs: list[Event] = []
    here.subscribe(mine.append)
    there.subscribe(theirs.append)
    await asyncio.sleep(0.05)  # the second one's "joined" reaches the first
    for event in events:
        here.publish(event)
    for _ in range(100):
        if len(mine) == len(theirs) == len(events):
            break
        await asyncio.sleep(0.01)
    here.close()
    there.close()
    return mine, theirs


def test_events_reach_the_other_processes_and_large_data_is_left_to_load(
    tmp_path: Path,
) -> None:
    """Each event is delivered here and sent to every peer; data too large for a datagram
    travels without it (a peer loads it, as with PostgreSQL's NOTIFY limit)."""
    small = Event("submission.scored", 1, {"submission_id": 7})
    large = Event("competition.created", 2, {"description": "x" * (DATAGRAM_LIMIT + 1)})
    mine, theirs = run(exchange(tmp_path / "peers", [small, large]))
    assert mine == [small, large]
    assert theirs == [small, Event("competition.created", 2, {}, large.at)]
    assert list((tmp_path / "peers").iterdir()) == []  # closed buses remove their sockets


def test_a_dead_peers_socket_is_removed(tmp_path: Path) -> None:
    """A socket file left by a process that is gone is deleted at the next publish."""
    folder = tmp_path / "peers"
    folder.mkdir(mode=0o700)
    (folder / "12345-dead.sock").touch()  # nobody listens on it

    async def publish() -> None:
        bus = SocketEventBus(folder)
        bus.publish(Event("submission.scored", 1, {}))
        bus.close()

    run(publish())
    assert list(folder.iterdir()) == []


def test_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    """Another user could send events through a folder open to them: it is refused."""
    folder = tmp_path / "peers"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)

    async def start() -> None:
        SocketEventBus(folder)

    with pytest.raises(PermissionError, match="mode 700"):
        run(start())
