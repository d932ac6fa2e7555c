"""The event bus among server processes on one machine (Unix datagram sockets)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdsource.server import events
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


async def arrival(count: Callable[[], int], expected: int, quiet: float = 5.0) -> None:
    """Wait until `count()` reaches `expected`, or has not grown for `quiet` seconds."""
    last, since = -1, time.monotonic()
    while count() < expected and time.monotonic() - since < quiet:
        if count() != last:
            last, since = count(), time.monotonic()
        await asyncio.sleep(0.01)


async def burst(folder: Path, events: list[Event], *, buses: int = 2) -> list[list[Event]]:
    """Publish every event on the first bus at once, without yielding to the loop in between
    (so the kernel's queue for each receiver, ten datagrams, fills at once); what each other
    bus in the folder delivers."""
    here, *others = [SocketEventBus(folder) for _ in range(buses)]
    received: list[list[Event]] = [[] for _ in others]
    for bus, got in zip(others, received, strict=True):
        bus.subscribe(got.append)
    await asyncio.sleep(0.05)  # the others' "joined" reach the first
    for event in events:
        here.publish(event)
    await arrival(lambda: sum(map(len, received)), len(events) * len(others))
    for bus in (here, *others):
        bus.close()
    return received


def test_a_burst_reaches_every_other_process_whole_and_in_order(tmp_path: Path) -> None:
    """Thousands of events published at once: none is dropped when a receiver's queue is full
    (they wait until it has room), and each other process gets them in order."""
    events = [Event("submission.scored", i % 7, {"submission_id": i}) for i in range(5000)]
    for got in run(burst(tmp_path / "peers", events, buses=3)):
        assert got == events


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(0, DATAGRAM_LIMIT + 100), min_size=1, max_size=40))
def test_any_mix_of_event_sizes_arrives_in_order(tmp_path: Path, sizes: list[int]) -> None:
    """Small and large events in any order, many at once, arrive in order; data too large for
    a datagram travels without it."""
    events = [Event("competition.created", i, {"d": "x" * n}) for i, n in enumerate(sizes)]
    folder = tmp_path / f"peers-{uuid.uuid4().hex[:8]}"
    [got] = run(burst(folder, events))
    assert [e.competition_id for e in got] == list(range(len(sizes)))
    for sent, arrived in zip(events, got, strict=True):
        assert arrived.data in (sent.data, {})
        assert arrived.data == sent.data or len(sent.to_json()) > DATAGRAM_LIMIT


def test_a_peer_that_ends_with_events_waiting_is_forgotten(tmp_path: Path) -> None:
    """A process that ends while events wait for it: its socket is removed, the others go on
    receiving."""
    folder = tmp_path / "peers"

    async def scenario() -> list[Event]:
        here, gone, stays = SocketEventBus(folder), SocketEventBus(folder), SocketEventBus(folder)
        got: list[Event] = []
        stays.subscribe(got.append)
        await asyncio.sleep(0.05)
        events = [Event("submission.scored", 1, {"submission_id": i}) for i in range(500)]
        for event in events[:250]:
            here.publish(event)
        gone._sock.close()  # ends without cleaning up: its socket file stays behind
        for event in events[250:]:
            here.publish(event)
        await arrival(lambda: len(got), len(events))
        left = sorted(p.name for p in folder.iterdir())
        assert left == sorted([here._path.name, stays._path.name])
        here.close()
        stays.close()
        return got

    got = run(scenario())
    assert [e.data["submission_id"] for e in got] == list(range(500))


def test_events_published_from_another_thread_cross_too(tmp_path: Path) -> None:
    """publish may be called from any thread, as the base bus allows."""
    folder = tmp_path / "peers"

    async def scenario() -> list[Event]:
        here, there = SocketEventBus(folder), SocketEventBus(folder)
        got: list[Event] = []
        there.subscribe(got.append)
        await asyncio.sleep(0.05)
        events = [Event("submission.scored", 1, {"submission_id": i}) for i in range(300)]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [here.publish(e) for e in events]
        )
        await arrival(lambda: len(got), len(events))
        here.close()
        there.close()
        return got

    assert [e.data["submission_id"] for e in run(scenario())] == list(range(300))


def test_what_waits_for_a_stuck_process_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that never reads: events wait for it up to QUEUE_LIMIT bytes, then are
    counted and logged once, not kept without end."""
    monkeypatch.setattr(events, "QUEUE_LIMIT", 50_000)
    folder = tmp_path / "peers"
    folder.mkdir(mode=0o700)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(str(folder / "1-stuck.sock"))

    async def scenario() -> int:
        bus = SocketEventBus(folder)
        for i in range(5000):
            bus.publish(Event("submission.scored", 1, {"submission_id": i}))
        await asyncio.sleep(0.2)
        waiting = sum(p.waiting_bytes for p in bus._peers.values())
        bus.close()
        return waiting

    assert 0 < run(scenario()) <= 50_000
    assert len([r for r in caplog.records if "not sent" in r.getMessage()]) == 1
    stuck.close()
