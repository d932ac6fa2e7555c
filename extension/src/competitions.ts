/**
 * The competitions model of the page and the panel: the list by REST after each `hello`
 * of an event stream without `competition=` (so a reconnect resyncs), `competition.*`
 * events in between, and, with a token, who the viewer is and their rank in each.
 */
import { ApiError, CrowdsourceApi } from './api';
import { EventStream, SocketFactory } from './stream';
import { Competition, Event, Named, isEntryOf } from './types';
import { Connection, throttled } from './board';

/** How many competitions' ranks are read for the list's badges (the newest). */
export const RANKED = 20;
/** A competition's rank is read again at most this often (each push may move it). */
export const RANK_EVERY_MS = 5000;

export class CompetitionsModel {
  competitions: Competition[] = [];
  loaded = false;
  error: ApiError | null = null;
  /** The viewer (token), or null; `authError` says why not when a token was refused. */
  me: Named | null = null;
  authError: ApiError | null = null;
  /** The viewer's rank per competition id (null: no rank yet). */
  readonly ranks = new Map<number, number | null>();
  connection: Connection = 'stopped';
  retryMs = 0;
  private stream: EventStream;
  private listeners = new Set<() => void>();
  private frameListeners = new Set<(frame: Event) => void>();
  private seq = 0;
  private rankReads = new Map<number, () => void>();

  constructor(
    readonly api: CrowdsourceApi,
    open?: SocketFactory
  ) {
    // Public events are all the list needs: no token, so a refused one loses nothing.
    this.stream = new EventStream(
      new CrowdsourceApi(api.baseUrl).eventsUrl(),
      {
        onHello: frame => {
          this.connection = 'live';
          void this.resync();
          this.emit(frame);
        },
        onFrame: frame => this.receive(frame),
        onDown: retryMs => {
          this.connection = 'down';
          this.retryMs = retryMs;
          this.notify();
        }
      },
      open
    );
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Call `listener` with every frame of the stream (hello included); returns the unsubscribe. */
  subscribeFrames(listener: (frame: Event) => void): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  start(): void {
    this.connection = 'connecting';
    this.stream.start();
    this.notify();
  }

  stop(): void {
    this.stream.stop();
    this.connection = 'stopped';
    this.listeners.clear();
    this.frameListeners.clear();
    this.me = null; // pending reads then change nothing
  }

  retryNow(): void {
    this.stream.retryNow();
  }

  /** Reload the list (and who the viewer is) by REST. */
  async resync(): Promise<void> {
    const seq = ++this.seq;
    try {
      const competitions = await this.api.competitions();
      if (seq !== this.seq) {
        return;
      }
      this.competitions = competitions;
      this.loaded = true;
      this.error = null;
    } catch (err) {
      if (seq === this.seq) {
        this.error = asApiError(err);
      }
    }
    await this.checkToken(seq);
    if (seq === this.seq) {
      this.notify();
      for (const c of this.competitions.slice(0, RANKED)) {
        this.readRank(c.id);
      }
    }
  }

  private async checkToken(seq: number): Promise<void> {
    if (!this.api.token) {
      this.me = null;
      this.authError = null;
      return;
    }
    try {
      const me = await this.api.me();
      if (seq === this.seq) {
        this.me = me;
        this.authError = null;
      }
    } catch (err) {
      if (seq === this.seq) {
        this.me = null;
        this.authError = asApiError(err);
      }
    }
  }

  /** The viewer's rank in one listed competition, by REST `around=me` (throttled). */
  readRank(competitionId: number): void {
    if (this.me === null) {
      return;
    }
    let read = this.rankReads.get(competitionId);
    if (read === undefined) {
      read = throttled(() => this.fetchRank(competitionId), RANK_EVERY_MS);
      this.rankReads.set(competitionId, read);
    }
    read();
  }

  private fetchRank(competitionId: number): void {
    const me = this.me;
    if (me === null) {
      return;
    }
    this.api
      .around(competitionId, 1)
      .then(page => {
        // A server without `around` answers the whole board: find the entry in it.
        const mine =
          page.me !== undefined
            ? page.me
            : page.entries.find(e => isEntryOf(e, me.id));
        this.setRank(competitionId, mine ? mine.rank : null);
      })
      .catch(() => undefined);
  }

  /** Set one competition's rank from a live `leaderboard.you`. */
  setRank(competitionId: number, rank: number | null): void {
    if (this.ranks.get(competitionId) !== rank) {
      this.ranks.set(competitionId, rank);
      this.notify();
    }
  }

  private receive(frame: Event): void {
    this.emit(frame);
    switch (frame.type) {
      case 'competition.created':
      case 'competition.updated':
      case 'competition.closed':
        // Archiving closes a competition too: an archived one leaves the list (as in REST).
        if (frame.data.archived) {
          this.remove(frame.data.id);
        } else {
          this.upsert(frame.data);
        }
        break;
      case 'competition.deleted':
        this.remove(frame.competition_id);
        break;
      case 'leaderboard.changed':
        // Only the badges of the listed competitions that were read are kept current.
        if (this.ranks.has(frame.competition_id)) {
          this.readRank(frame.competition_id);
        }
        break;
      default:
        break;
    }
  }

  private remove(id: number): void {
    this.competitions = this.competitions.filter(c => c.id !== id);
    this.notify();
  }

  private upsert(competition: Competition): void {
    const index = this.competitions.findIndex(c => c.id === competition.id);
    if (index >= 0) {
      this.competitions[index] = competition;
    } else {
      this.competitions.unshift(competition);
    }
    this.loaded = true;
    this.notify();
  }

  private emit(frame: Event): void {
    for (const listener of [...this.frameListeners]) {
      listener(frame);
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }
}

export function asApiError(err: unknown): ApiError {
  return err instanceof ApiError
    ? err
    : new ApiError('http', err instanceof Error ? err.message : String(err));
}
