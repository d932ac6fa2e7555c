/** A WebSocket stand-in the tests drive by hand, and entries to fill boards with. */
import { Entry } from '../src/types';

export class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: any[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  static latest(): FakeSocket {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  send(text: string): void {
    this.sent.push(JSON.parse(text));
  }

  close(): void {
    this.readyState = 3;
  }

  /** The server accepts and greets. */
  accept(competitionId = 1): void {
    this.readyState = 1;
    this.onopen?.();
    this.frame('hello', {}, competitionId);
  }

  frame(type: string, data: object, competitionId: number | null = 1): void {
    const frame = {
      type,
      competition_id: competitionId,
      data,
      at: '2026-12-01T10:00:00Z'
    };
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The server closes the connection (e.g. 4000 "fell behind"). */
  drop(): void {
    this.readyState = 3;
    this.onclose?.();
  }
}

export const open = (url: string) =>
  new FakeSocket(url) as unknown as WebSocket;

export function entry(
  id: number,
  rank: number | null,
  score: number | null,
  name = `p${id}`
): Entry {
  return {
    rank,
    name,
    participant: { id, name },
    team: null,
    score,
    submissions: 1,
    last_submission_at: '2026-12-01T09:00:00Z'
  };
}

export function snapshot(
  version: number,
  entries: Entry[],
  limit = 3,
  total = entries.length
) {
  return {
    board: 'public',
    version,
    total,
    limit,
    title: 'Iris',
    metric: 'rmse',
    higher_is_better: false,
    entries
  };
}
