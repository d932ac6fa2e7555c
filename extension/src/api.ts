/**
 * A small REST client for the crowdsource server, with errors a person can act on.
 */
import {
  Competition,
  CompetitionList,
  LeaderboardPage,
  Named,
  Standings
} from './types';

export const DEFAULT_SERVER_URL = 'http://127.0.0.1:8889';

/** What went wrong, so that the panel can pick the right state. */
export type ApiErrorKind = 'unreachable' | 'unauthorized' | 'http';

export class ApiError extends Error {
  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    readonly status?: number
  ) {
    super(message);
  }
}

/** `127.0.0.1:8889/` -> `http://127.0.0.1:8889`; empty -> the default URL. */
export function normalizeServerUrl(raw: string | undefined | null): string {
  let url = (raw ?? '').trim();
  if (!url) {
    url = DEFAULT_SERVER_URL;
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    url = 'http://' + url;
  }
  return url.replace(/\/+$/, '');
}

export class CrowdsourceApi {
  readonly baseUrl: string;

  constructor(
    serverUrl: string,
    readonly token: string = ''
  ) {
    this.baseUrl = normalizeServerUrl(serverUrl);
  }

  /** The events WebSocket URL: one competition's board when `competitionId` is given;
   * the token (if any) in the query, as browsers cannot set headers on a WebSocket. */
  eventsUrl(competitionId?: number | null): string {
    const query = new URLSearchParams();
    if (competitionId !== undefined && competitionId !== null) {
      query.set('competition', String(competitionId));
    }
    // Nothing here reads others' submission events; the board's changes come either way.
    query.set('submissions', 'mine');
    if (this.token) {
      query.set('token', this.token);
    }
    const qs = query.toString();
    return (
      this.baseUrl.replace(/^http/i, 'ws') +
      '/api/v1/events' +
      (qs ? '?' + qs : '')
    );
  }

  /** The newest competitions first (one page: a page lists at most `limit`). */
  async competitions(limit = 100): Promise<Competition[]> {
    const body = await this.get<CompetitionList>(
      `/competitions?status=all&limit=${limit}`
    );
    return body.competitions;
  }

  /** A page of a public board, in rank order. */
  board(
    competitionId: number,
    page: { limit: number; offset?: number }
  ): Promise<LeaderboardPage> {
    const offset = page.offset ?? 0;
    return this.get<LeaderboardPage>(
      `/competitions/${competitionId}/leaderboard?board=public` +
        `&limit=${page.limit}&offset=${offset}`
    );
  }

  /** `limit` entries centred on the token's own entry, and that entry as `me`. */
  around(competitionId: number, limit = 11): Promise<LeaderboardPage> {
    return this.get<LeaderboardPage>(
      `/competitions/${competitionId}/leaderboard?board=public&around=me&limit=${limit}`,
      true
    );
  }

  /** The best `limit` functions and participants across the rounds of a competition type. */
  standings(type: string, limit: number): Promise<Standings> {
    return this.get<Standings>(
      `/standings?type=${encodeURIComponent(type)}&limit=${limit}`
    );
  }

  me(): Promise<Named> {
    return this.get<Named>('/participants/me', true);
  }

  private async get<T>(path: string, withToken = false): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (withToken && this.token) {
      headers['Authorization'] = `Bearer ${this.token}`;
    }
    let response: Response;
    try {
      response = await fetch(this.baseUrl + '/api/v1' + path, {
        headers,
        cache: 'no-store',
        credentials: 'omit'
      });
    } catch {
      throw new ApiError(
        'unreachable',
        `Cannot reach the crowdsource server at ${this.baseUrl}.`
      );
    }
    let body: any;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail =
        body && typeof body.message === 'string' ? body.message : '';
      const kind: ApiErrorKind =
        response.status === 401 || response.status === 403
          ? 'unauthorized'
          : 'http';
      throw new ApiError(
        kind,
        `${this.baseUrl} answered ${response.status}` +
          (detail ? `: ${detail}` : '.'),
        response.status
      );
    }
    if (body === null) {
      throw new ApiError(
        'http',
        `${this.baseUrl} did not answer with JSON; is it a crowdsource server?`,
        response.status
      );
    }
    return body as T;
  }
}
