/**
 * The leaderboard model: one competition's live board, kept from the event stream's
 * `leaderboard.snapshot` / `leaderboard.delta` / `leaderboard.you` frames, with REST for the
 * first paint, the viewer's neighbourhood and servers that send no snapshots.
 */
import { CrowdsourceApi } from './api';
import { EventStream, SocketFactory } from './stream';
import {
  entryName,
  Board,
  LeaderboardPage,
  BoardDelta,
  BoardSnapshot,
  Entry,
  Event,
  IHistoryPoint,
  BoardYou
} from './types';

export const DEFAULT_LIMIT = 100;
export const MAX_HISTORY = 5000;
/** How many entries around the viewer's own to show when it is below the top. */
export const AROUND = 11;
/** The neighbourhood is read again at most this often (each push may move a rank). */
export const AROUND_EVERY_MS = 5000;

/** `fn` run at most once per `ms`: a call meanwhile runs once when the time is up. */
export function throttled(fn: () => void, ms: number): () => void {
  let last = -Infinity;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const run = () => {
    timer = null;
    last = Date.now();
    fn();
  };
  return () => {
    if (timer !== null) {
      return;
    }
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      run();
    } else {
      timer = setTimeout(run, wait);
    }
  };
}

/** Entries in board order: rank (null last), then name. */
export function sortEntries(entries: Entry[]): Entry[] {
  return [...entries].sort((a, b) => {
    if (a.rank !== b.rank) {
      if (a.rank === null) {
        return 1;
      }
      if (b.rank === null) {
        return -1;
      }
      return a.rank - b.rank;
    }
    const an = entryName(a);
    const bn = entryName(b);
    return an < bn ? -1 : an > bn ? 1 : 0;
  });
}

/** The board after `delta`, or null when the delta does not follow `board` (a gap: resync). */
export function applyDelta(board: Board, delta: BoardDelta): Board | null {
  if (board.version === null || delta.previous !== board.version) {
    return null;
  }
  const removed = new Set(delta.removed);
  const byId = new Map<number, Entry>();
  for (const entry of board.entries) {
    if (!removed.has(entry.participant.id)) {
      byId.set(entry.participant.id, entry);
    }
  }
  for (const entry of delta.entries) {
    byId.set(entry.participant.id, entry);
  }
  return {
    ...board,
    version: delta.version,
    total: delta.total,
    entries: sortEntries([...byId.values()]).slice(0, board.limit)
  };
}

/** A snapshot frame's data as a board (whatever else it carries is kept). */
export function boardOfSnapshot(data: any): Board {
  const entries: Entry[] = Array.isArray(data?.entries) ? data.entries : [];
  return {
    ...data,
    version: typeof data?.version === 'number' ? data.version : null,
    total: typeof data?.total === 'number' ? data.total : entries.length,
    limit: typeof data?.limit === 'number' ? data.limit : entries.length,
    entries
  };
}

/** A REST page as a version-less board of at most `limit` entries. */
export function boardOfPage(
  page: LeaderboardPage,
  limit: number,
  meta: Partial<Board>
): Board {
  return {
    ...meta,
    metric: page.metric,
    higher_is_better: page.higher_is_better,
    title: page.title,
    version: null,
    total: page.total,
    limit,
    entries: page.entries.slice(0, limit)
  };
}

/** Records a point each time an entry's best score changes, oldest dropped past `max`. */
export class History {
  readonly points: IHistoryPoint[] = [];
  private best = new Map<number, number>();

  constructor(private readonly max = MAX_HISTORY) {}

  /** Note the entries' scores; `at` is the time of the change (else the entry's last time). */
  record(entries: Entry[], at?: string): void {
    for (const entry of entries) {
      const id = entry.participant.id;
      if (entry.score === null || this.best.get(id) === entry.score) {
        continue;
      }
      this.best.set(id, entry.score);
      const when = at ?? entry.last_submission_at;
      if (when) {
        this.points.push({
          at: when,
          participant_id: id,
          name: entryName(entry),
          score: entry.score
        });
      }
    }
    if (this.points.length > this.max) {
      this.points.splice(0, this.points.length - this.max);
    }
  }
}

export type Connection = 'connecting' | 'live' | 'down' | 'stopped';

export interface ILiveBoardOptions {
  api: CrowdsourceApi;
  competitionId: number;
  /** Title, metric and direction known before the first frame (from the competition). */
  meta?: Partial<Board>;
  /** How many entries a REST read fetches (the server's snapshot sets its own). */
  limit?: number;
  /** Read the board by REST before the first snapshot (false: the widget's traitlets do). */
  rest?: boolean;
  open?: SocketFactory;
}

/** One competition's live board; views subscribe and render `board`, `you` and `around`. */
export class LiveBoard {
  board: Board | null = null;
  you: BoardYou | null = null;
  /** The viewer's neighbourhood (REST `around=me`), when below the top window. */
  around: Entry[] = [];
  readonly history = new History();
  connection: Connection = 'stopped';
  retryMs = 0;
  /** What went wrong reading by REST, if anything (shown as the status). */
  error: string | null = null;
  readonly api: CrowdsourceApi;
  readonly competitionId: number;
  private stream: EventStream;
  private listeners = new Set<() => void>();
  private resyncing = false;
  private loading: Promise<void> | null = null;
  private reloadAgain = false;
  private readAround = throttled(() => this.fetchAround(), AROUND_EVERY_MS);
  private stopped = false;

  constructor(private readonly options: ILiveBoardOptions) {
    this.api = options.api;
    this.competitionId = options.competitionId;
    this.stream = new EventStream(
      this.api.eventsUrl(this.competitionId),
      {
        onHello: () => this.onHello(),
        onFrame: frame => this.receive(frame),
        onDown: retryMs => {
          this.connection = 'down';
          this.retryMs = retryMs;
          this.notify();
        }
      },
      options.open
    );
  }

  /** Call `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.connection = 'connecting';
    this.stream.start();
    if (this.options.rest !== false) {
      void this.reload();
    }
  }

  stop(): void {
    this.stopped = true;
    this.stream.stop();
    this.connection = 'stopped';
    this.listeners.clear();
  }

  retryNow(): void {
    this.stream.retryNow();
  }

  /** Apply one frame of the event stream. */
  receive(frame: Event): void {
    if (frame.competition_id !== this.competitionId) {
      return;
    }
    switch (frame.type) {
      case 'leaderboard.snapshot':
        this.onSnapshot(frame.data);
        break;
      case 'leaderboard.delta':
        this.onDelta(frame.data, frame.at);
        break;
      case 'leaderboard.you':
        this.you = frame.data;
        this.notify();
        this.refreshAround();
        break;
      case 'leaderboard.changed':
        // Only a listener the server sends no snapshots to gets this: read by REST.
        if (this.board?.version === null || this.board === null) {
          void this.reload();
        }
        break;
      default:
        break;
    }
  }

  private onHello(): void {
    this.connection = 'live';
    this.resyncing = false;
    if (this.board) {
      // Versions count per connection: the snapshot that follows starts them anew.
      this.board = { ...this.board, version: null };
    }
    this.notify();
  }

  private onSnapshot(snapshot: BoardSnapshot): void {
    this.board = { ...this.options.meta, ...boardOfSnapshot(snapshot) };
    this.resyncing = false;
    this.history.record(this.board.entries);
    this.notify();
    this.refreshAround();
  }

  private onDelta(delta: BoardDelta, at: string): void {
    if (this.resyncing || this.board === null) {
      return;
    }
    const next = applyDelta(this.board, delta);
    if (next === null) {
      this.resyncing = this.stream.send({ type: 'snapshot' });
      return;
    }
    this.board = next;
    this.history.record(delta.entries, at);
    this.notify();
    this.refreshAround();
  }

  /** Read the top by REST (first paint; servers without snapshots), one read at a time. */
  reload(): Promise<void> {
    if (this.loading) {
      this.reloadAgain = true;
      return this.loading;
    }
    const limit = this.options.limit ?? DEFAULT_LIMIT;
    this.loading = this.api
      .board(this.competitionId, { limit })
      .then(page => {
        this.error = null;
        if (this.board === null || this.board.version === null) {
          this.board = boardOfPage(page, limit, {
            ...this.options.meta,
            ...this.board,
            version: null
          });
          this.history.record(this.board.entries);
        }
      })
      .catch(err => {
        this.error = err instanceof Error ? err.message : String(err);
      })
      .finally(() => {
        this.loading = null;
        this.notify();
        if (this.reloadAgain) {
          this.reloadAgain = false;
          void this.reload();
        }
      });
    return this.loading;
  }

  /** Whether the viewer (token) ranks below the top window. */
  private isBelow(): boolean {
    const you = this.you;
    const board = this.board;
    return (
      you !== null &&
      board !== null &&
      you.rank !== null &&
      you.rank > board.entries.length &&
      !board.entries.some(e => e.participant.id === you.participant_id)
    );
  }

  /** Read the neighbourhood when below the top window (throttled), else drop it. */
  private refreshAround(): void {
    if (!this.api.token || !this.you) {
      return;
    }
    if (this.isBelow()) {
      this.readAround();
    } else if (this.around.length) {
      this.around = [];
      this.notify();
    }
  }

  private fetchAround(): void {
    if (this.stopped || !this.isBelow()) {
      return;
    }
    void this.api
      .around(this.competitionId, AROUND)
      .then(page => {
        if (!this.stopped && this.isBelow()) {
          this.around = page.entries;
          this.notify();
        }
      })
      .catch(() => undefined);
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }
}
