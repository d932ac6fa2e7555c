"""Many WebSocket watchers of one competition's live board, from one asyncio process.

    python bench/watchers.py --url ws://127.0.0.1:PORT/api/v1/events --competition 1 \\
        --count 1000 --participant 7 [--probes 20]

Half of the watchers read every frame (even-numbered ones), half never read at all after
the handshake (odd-numbered ones: a raw socket whose reading pauses once 8 KiB wait, so the
server's sends to it back up as to a stalled browser tab). `--probes` of the reading ones are
WebSocket clients that parse every frame, keep their board version (on a gap they ask for a
snapshot, as the protocol says) and note when the entry of `--participant` first shows each
new submissions count, in a `leaderboard.delta`, a `leaderboard.snapshot` or a whole-board
`leaderboard.changed`. The other readers drain their raw socket as fast as the server sends:
to the server they are fast clients, and this one process stays able to keep up with
hundreds of them (parsing every frame of 500 streams here would measure this process).

Prints `READY {json}` once every watcher is connected; then, for each line on stdin,
`report` prints `REPORT {json}` (frames, bytes, closes and the probes' sightings with
`time.monotonic()` stamps, comparable with the bench process's on Linux) and `stop` prints
it and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tornado.websocket import WebSocketClientConnection, websocket_connect

BOARD_TYPES = ("leaderboard.delta", "leaderboard.snapshot", "leaderboard.changed")
RECONNECTS = 5  # a reading watcher that is closed reconnects at most this many times


@dataclass
class Stats:
    """What the watchers received, all together."""

    connected: int = 0
    failed: list[str] = field(default_factory=list)
    frames: int = 0
    bytes: int = 0
    resyncs: int = 0
    reconnects: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    # probe watcher -> [submissions count, when first seen] as the count grows
    sightings: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    def as_json(self) -> str:
        """The report line's body."""
        return json.dumps(
            {
                "connected": self.connected,
                "failed": self.failed[:5],
                "failures": len(self.failed),
                "frames": self.frames,
                "bytes": self.bytes,
                "resyncs": self.resyncs,
                "reconnects": self.reconnects,
                "closes": dict(self.closes),
                "sightings": self.sightings,
            }
        )


def count_of(event: dict[str, Any], participant: int) -> int | None:
    """The submissions count of `participant`'s entry in a board frame, if it carries one."""
    if event.get("type") not in BOARD_TYPES:
        return None
    for entry in (event.get("data") or {}).get("entries") or ():
        if (entry.get("participant") or {}).get("id") == participant:
            return int(entry["submissions"])
    return None


class Watcher:
    """One WebSocket: a reader (maybe a probe) or one that never reads."""

    def __init__(self, index: int, args: argparse.Namespace, stats: Stats) -> None:
        self.index, self.args, self.stats = index, args, stats
        self.reads = index % 2 == 0
        self.probe = self.reads and index // 2 < args.probes
        self.conn: WebSocketClientConnection | None = None  # a probe's
        self.raw: asyncio.StreamReader | None = None  # another reader's socket, drained
        self.held: asyncio.StreamWriter | None = None  # the raw socket (never read: stalled)
        self.version: int | None = None
        self.seen = 0
        if self.probe:
            stats.sightings[index] = []  # a probe that never sees its participant says so

    @property
    def url(self) -> str:
        return f"{self.args.url}?competition={self.args.competition}&submissions=mine"

    async def connect(self) -> None:
        """Open the socket (a probe also reads its `hello`)."""
        if not self.probe:
            return await self.hold()
        self.conn = await websocket_connect(
            self.url, connect_timeout=30, max_message_size=256 * 2**20
        )
        hello = await asyncio.wait_for(self.conn.read_message(), 30)
        if hello is None:
            raise ConnectionError("closed before hello")

    async def hold(self) -> None:
        """Open the WebSocket by hand, reading nothing after the handshake (yet)."""
        parts = urlsplit(self.url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port, limit=4096), 30
        )
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head[:200].decode(errors="replace"))
        self.raw, self.held = reader, writer

    async def run(self) -> None:
        """Read every frame (readers), reconnecting a few times if closed."""
        if not self.reads:
            return  # holds its socket open and never reads again
        if not self.probe:
            return await self.drain()
        for attempt in range(RECONNECTS + 1):
            if attempt:
                self.stats.reconnects += 1
                await asyncio.sleep(0.5 * attempt)
                try:
                    await self.connect()
                except Exception:
                    continue
            await self.read_all()

    async def drain(self) -> None:
        """Read the raw socket until the server closes it, counting bytes."""
        assert self.raw is not None
        while chunk := await self.raw.read(1 << 16):
            self.stats.bytes += len(chunk)
        self.stats.closes["eof (a drained reader)"] += 1

    async def read_all(self) -> None:
        """Read frames until the socket closes."""
        assert self.conn is not None
        while True:
            msg = await self.conn.read_message()
            now = time.monotonic()
            if msg is None:
                self.stats.closes[str(self.conn.close_code)] += 1
                return
            self.stats.frames += 1
            self.stats.bytes += len(msg)
            self.on_event(json.loads(msg), now)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        """Keep the board version (resync on a gap); note the participant's count."""
        data = event.get("data") or {}
        if event.get("type") == "leaderboard.snapshot":
            self.version = data.get("version")
        elif event.get("type") == "leaderboard.delta":
            if self.version is not None and data.get("previous") != self.version:
                self.stats.resyncs += 1
                assert self.conn is not None
                self.conn.write_message(json.dumps({"type": "snapshot"}))
            self.version = data.get("version")
        count = count_of(event, self.args.participant)
        if count is not None and count > self.seen:
            self.seen = count
            self.stats.sightings.setdefault(self.index, []).append((count, now))


async def connect_all(watchers: list[Watcher], stats: Stats, batch: int = 50) -> None:
    """Connect every watcher, `batch` at a time."""
    gate = asyncio.Semaphore(batch)

    async def one(w: Watcher) -> None:
        async with gate:
            try:
                await w.connect()
                stats.connected += 1
            except Exception as exc:
                stats.failed.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(w) for w in watchers))


async def main(args: argparse.Namespace) -> None:
    """Connect, report READY, then answer `report` / `stop` lines on stdin."""
    stats = Stats()
    watchers = [Watcher(i, args, stats) for i in range(args.count)]
    t0 = time.monotonic()
    await connect_all(watchers, stats)
    opened = [w for w in watchers if w.conn is not None or w.held is not None]
    tasks = [asyncio.ensure_future(w.run()) for w in opened if w.reads]
    held = len(opened) - len(tasks)
    ready = {
        "connected": stats.connected,
        "readers": len(tasks),
        "never_read": held,
        "failures": len(stats.failed),
        "failed": stats.failed[:3],
        "seconds": round(time.monotonic() - t0, 2),
    }
    print("READY " + json.dumps(ready), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        print("REPORT " + stats.as_json(), flush=True)
        if line.strip() != "report":  # stop, or the bench went away
            break
    for task in tasks:
        task.cancel()


def raise_open_files() -> int:
    """Raise this process's open-files limit to its hard limit; returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="ws://HOST:PORT/api/v1/events")
    ap.add_argument("--competition", type=int, required=True)
    ap.add_argument("--participant", type=int, required=True, help="whose entry probes follow")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=20, help="readers that parse every frame")
    parsed = ap.parse_args()
    if raise_open_files() < parsed.count + 64:
        sys.exit(f"the open-files limit is below {parsed.count + 64}: raise `ulimit -n`")
    asyncio.run(main(parsed))
