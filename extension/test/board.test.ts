import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { CrowdsourceApi } from '../src/api';
import {
  applyDelta,
  boardOfSnapshot,
  History,
  LiveBoard,
  sortEntries
} from '../src/board';
import { backoffMs, MAX_BACKOFF_MS } from '../src/stream';
import { entry, FakeSocket, open, snapshot } from './fakes';

function follow(token = ''): LiveBoard {
  const board = new LiveBoard({
    api: new CrowdsourceApi('http://x.test', token),
    competitionId: 1,
    rest: false,
    open
  });
  board.start();
  return board;
}

describe('applying deltas', () => {
  it('sorts by rank with unscored entries last, ties by name', () => {
    const sorted = sortEntries([
      entry(1, null, null, 'a'),
      entry(2, 2, 0.5, 'b'),
      entry(3, 1, 0.1, 'z'),
      entry(4, 1, 0.1, 'c')
    ]);
    expect(sorted.map(e => e.participant.id)).toEqual([4, 3, 2, 1]);
  });

  it('upserts, removes, re-sorts and keeps the top `limit`', () => {
    const board = boardOfSnapshot(
      snapshot(5, [entry(1, 1, 0.1), entry(2, 2, 0.2), entry(3, 3, 0.3)])
    );
    const next = applyDelta(board, {
      board: 'public',
      version: 6,
      previous: 5,
      total: 4,
      entries: [entry(4, 1, 0.05), entry(1, 2, 0.1), entry(2, 3, 0.2)],
      removed: [3]
    })!;
    expect(next.version).toBe(6);
    expect(next.total).toBe(4);
    expect(next.entries.map(e => [e.participant.id, e.rank])).toEqual([
      [4, 1],
      [1, 2],
      [2, 3]
    ]);
  });

  it('cuts to the limit when an entry enters without a removal', () => {
    const board = boardOfSnapshot(
      snapshot(1, [entry(1, 1, 0.1), entry(2, 2, 0.2), entry(3, 3, 0.3)])
    );
    const next = applyDelta(board, {
      board: 'public',
      version: 2,
      previous: 1,
      total: 4,
      entries: [
        entry(4, 1, 0.0),
        entry(1, 2, 0.1),
        entry(2, 3, 0.2),
        entry(3, 4, 0.3)
      ],
      removed: []
    })!;
    expect(next.entries.map(e => e.participant.id)).toEqual([4, 1, 2]);
  });

  it('reports a gap in versions instead of applying', () => {
    const board = boardOfSnapshot(snapshot(5, [entry(1, 1, 0.1)]));
    expect(
      applyDelta(board, {
        board: 'public',
        version: 8,
        previous: 7,
        total: 1,
        entries: [],
        removed: []
      })
    ).toBeNull();
    expect(
      applyDelta(
        { ...board, version: null },
        {
          board: 'public',
          version: 6,
          previous: 5,
          total: 1,
          entries: [],
          removed: []
        }
      )
    ).toBeNull();
  });
});

describe('following a board', () => {
  beforeEach(() => {
    FakeSocket.all = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('asks for its competition, applies a snapshot then deltas', () => {
    const live = follow();
    const socket = FakeSocket.latest();
    expect(socket.url).toBe(
      'ws://x.test/api/v1/events?competition=1&submissions=mine'
    );
    socket.accept();
    expect(live.connection).toBe('live');
    socket.frame(
      'leaderboard.snapshot',
      snapshot(3, [entry(1, 1, 0.1), entry(2, 2, 0.2)])
    );
    socket.frame('leaderboard.delta', {
      version: 4,
      previous: 3,
      total: 3,
      entries: [entry(3, 1, 0.05), entry(1, 2, 0.1), entry(2, 3, 0.2)],
      removed: []
    });
    expect(live.board!.version).toBe(4);
    expect(live.board!.entries.map(e => e.participant.id)).toEqual([3, 1, 2]);
    expect(live.board!.title).toBe('Iris');
  });

  it('resyncs on a version gap: one snapshot request, deltas ignored until it comes', () => {
    const live = follow();
    const socket = FakeSocket.latest();
    socket.accept();
    socket.frame('leaderboard.snapshot', snapshot(3, [entry(1, 1, 0.1)]));
    socket.frame('leaderboard.delta', {
      version: 6,
      previous: 5,
      total: 1,
      entries: [entry(1, 1, 0.0)],
      removed: []
    });
    socket.frame('leaderboard.delta', {
      version: 7,
      previous: 6,
      total: 1,
      entries: [entry(1, 1, 0.0)],
      removed: []
    });
    expect(socket.sent).toEqual([{ type: 'snapshot' }]);
    expect(live.board!.version).toBe(3);
    socket.frame('leaderboard.snapshot', snapshot(7, [entry(1, 1, 0.0)]));
    socket.frame('leaderboard.delta', {
      version: 8,
      previous: 7,
      total: 2,
      entries: [entry(2, 2, 0.5)],
      removed: []
    });
    expect(live.board!.version).toBe(8);
    expect(live.board!.entries.map(e => e.participant.id)).toEqual([1, 2]);
  });

  it('reconnects with backoff after a close and takes the new snapshot', () => {
    vi.useFakeTimers();
    const live = follow();
    const changes = vi.fn();
    live.subscribe(changes);
    const first = FakeSocket.latest();
    first.accept();
    first.frame('leaderboard.snapshot', snapshot(40, [entry(1, 1, 0.1)]));
    first.drop();
    expect(live.connection).toBe('down');
    expect(live.retryMs).toBeGreaterThan(0);
    expect(live.board!.entries).toHaveLength(1); // the last board stays shown meanwhile
    vi.advanceTimersByTime(live.retryMs);
    const second = FakeSocket.latest();
    expect(second).not.toBe(first);
    second.accept();
    // Versions count per connection: a delta from before the new snapshot does not apply.
    expect(live.board!.version).toBeNull();
    second.frame(
      'leaderboard.snapshot',
      snapshot(2, [entry(2, 1, 0.05), entry(1, 2, 0.1)])
    );
    expect(live.board!.version).toBe(2);
    expect(live.board!.entries.map(e => e.participant.id)).toEqual([2, 1]);
    expect(changes).toHaveBeenCalled();
  });

  it('backs off exponentially up to a cap', () => {
    expect(backoffMs(0, 0.5)).toBe(500);
    expect(backoffMs(3, 0.5)).toBe(4000);
    expect(backoffMs(30, 1)).toBeLessThanOrEqual(MAX_BACKOFF_MS * 1.2);
  });

  it("keeps the listener's own place from leaderboard.you, and sends the token", () => {
    const live = follow('secret');
    const socket = FakeSocket.latest();
    expect(socket.url).toContain('token=secret');
    socket.accept();
    socket.frame('leaderboard.you', {
      version: 1,
      participant_id: 9,
      rank: 4213,
      score: 0.7,
      total: 10000
    });
    expect(live.you).toMatchObject({ rank: 4213, total: 10000 });
  });

  it('ignores frames of other competitions', () => {
    const live = follow();
    const socket = FakeSocket.latest();
    socket.accept();
    socket.frame('leaderboard.snapshot', snapshot(1, [entry(1, 1, 0.1)]), 2);
    expect(live.board).toBeNull();
  });
});

describe('history', () => {
  it('records a point only when a best score changes, bounded', () => {
    const history = new History(3);
    history.record([entry(1, 1, 0.5)]);
    history.record([entry(1, 1, 0.5)], '2026-12-01T10:00:00Z');
    history.record([entry(1, 1, 0.4)], '2026-12-01T10:01:00Z');
    history.record(
      [entry(2, 2, 0.6), entry(3, 3, 0.7)],
      '2026-12-01T10:02:00Z'
    );
    expect(history.points.map(p => [p.participant_id, p.score])).toEqual([
      [1, 0.4],
      [2, 0.6],
      [3, 0.7]
    ]);
  });
});
