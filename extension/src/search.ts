/**
 * Search by name over a whole board: the names of every entry are read once by REST pages
 * (5,000 a page) when the viewer first searches, then each keystroke filters them in memory
 * (a substring scan of 10,000 lower-cased names takes well under a millisecond). Entries of
 * the live top window replace the indexed ones, so what is shown is as fresh as the board.
 */
import { CrowdsourceApi } from './api';
import { entryName, Entry } from './types';

export const PAGE_SIZE = 5000;
export const MAX_RESULTS = 50;

/** Every entry of a public board, page after page. */
export function boardLoader(
  api: CrowdsourceApi,
  competitionId: number
): () => Promise<Entry[]> {
  return async () => {
    const all: Entry[] = [];
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const page = await api.board(competitionId, { limit: PAGE_SIZE, offset });
      all.push(...page.entries);
      // A server without paging answers the whole board (no `total`) at once.
      const total = page.total ?? all.length;
      if (
        page.entries.length === 0 ||
        all.length >= total ||
        page.total === undefined
      ) {
        return all;
      }
    }
  };
}

export interface ISearchResult {
  entries: Entry[];
  /** How many entries match in all (more than shown when over MAX_RESULTS). */
  count: number;
}

/** Matches of `query` among `entries` (case-insensitive substring of the name). */
export function findByName(
  entries: Entry[],
  query: string,
  limit = MAX_RESULTS
): ISearchResult {
  const needle = query.trim().toLowerCase();
  const found: Entry[] = [];
  let count = 0;
  for (const entry of entries) {
    if (entryName(entry).toLowerCase().includes(needle)) {
      count += 1;
      if (found.length < limit) {
        found.push(entry);
      }
    }
  }
  return { entries: found, count };
}

/** The names of a whole board, loaded on first use and again when marked stale. */
export class SearchIndex {
  private entries: Entry[] | null = null;
  private loading: Promise<void> | null = null;
  private stale = false;
  error: string | null = null;

  constructor(private readonly load: () => Promise<Entry[]>) {}

  get ready(): boolean {
    return this.entries !== null;
  }

  /** The board changed since the index was read: read it again at the next `ensure`. */
  invalidate(): void {
    this.stale = true;
  }

  /** Load (or reload when stale); resolves when the index can answer. */
  ensure(): Promise<void> {
    if (this.loading) {
      return this.loading;
    }
    if (this.entries !== null && !this.stale) {
      return Promise.resolve();
    }
    this.stale = false;
    this.loading = this.load()
      .then(entries => {
        this.entries = entries;
        this.error = null;
      })
      .catch(err => {
        this.error = err instanceof Error ? err.message : String(err);
      })
      .finally(() => {
        this.loading = null;
      });
    return this.loading;
  }

  /** Matches in the index (or in `live` alone while loading), live entries winning. */
  find(query: string, live: Entry[]): ISearchResult {
    if (this.entries === null) {
      return findByName(live, query);
    }
    const fresh = new Map(live.map(e => [e.participant.id, e]));
    const merged = this.entries.map(e => fresh.get(e.participant.id) ?? e);
    const known = new Set(this.entries.map(e => e.participant.id));
    merged.push(...live.filter(e => !known.has(e.participant.id)));
    return findByName(merged, query);
  }
}
