/**
 * A small REST client for the crowdsource server, with errors a person can act on.
 */
import { ICompetition, ILeaderboard, IParticipantRef } from './types';

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

  /** The events WebSocket URL (public events only: the token is not sent). */
  eventsUrl(): string {
    return this.baseUrl.replace(/^http/i, 'ws') + '/api/v1/events';
  }

  async competitions(): Promise<ICompetition[]> {
    const body = await this.get<{ competitions: ICompetition[] }>(
      '/competitions?status=all'
    );
    return body.competitions ?? [];
  }

  async leaderboards(): Promise<ILeaderboard[]> {
    const body = await this.get<{ leaderboards: ILeaderboard[] }>(
      '/leaderboards'
    );
    return body.leaderboards ?? [];
  }

  leaderboard(
    competitionId: number,
    board: 'public' | 'private' = 'public'
  ): Promise<ILeaderboard> {
    return this.get<ILeaderboard>(
      `/competitions/${competitionId}/leaderboard?board=${board}`
    );
  }

  me(): Promise<IParticipantRef> {
    return this.get<IParticipantRef>('/participants/me', true);
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
    let body: any = null;
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
