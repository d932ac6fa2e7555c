/**
 * The side panel: competitions, and the selected competition's live leaderboard.
 *
 * State comes from REST after every WebSocket `hello` (so a reconnect resyncs), and
 * from events in between. Nothing polls on a timer.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ApiError, CrowdsourceApi, DEFAULT_SERVER_URL } from './api';
import { leaderboardChart } from './chart';
import { el, formatScore, formatShortTime, formatTime } from './dom';
import { EventStream } from './events';
import { IConnection } from './identity';
import {
  CompetitionStatus,
  ICompetition,
  entryName,
  ILeaderboard,
  isEntryOf,
  IParticipantRef,
  IServerEvent
} from './types';

type Connection = 'idle' | 'connecting' | 'live' | 'down';

/** A scored submission without a `leaderboard.changed` soon after: fetch the board. */
const BOARD_FALLBACK_MS = 400;
/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 24 * 3600 * 1000;

function boardKey(competitionId: number, board: string): string {
  return `${competitionId}:${board}`;
}

/** The status now, from the UTC times (the server's value may be stale by now). */
export function statusOf(c: ICompetition, now = Date.now()): CompetitionStatus {
  if (c.status === 'closed') {
    return 'closed';
  }
  const opens = c.opens_at ? Date.parse(c.opens_at) : NaN;
  const closes = c.closes_at ? Date.parse(c.closes_at) : NaN;
  if (!isNaN(closes) && now >= closes) {
    return 'closed';
  }
  if (!isNaN(opens) && now < opens) {
    return 'upcoming';
  }
  return c.status === 'upcoming' && isNaN(opens) ? 'upcoming' : 'open';
}

export class LeaderboardPanel extends Widget {
  private api = new CrowdsourceApi(DEFAULT_SERVER_URL);
  private configured = false;
  private tokenSource: IConnection['source'] = 'settings';
  /** Called each time the panel is shown (to ask again for the saved identity). */
  onShow: (() => void) | null = null;
  private stream: EventStream | null = null;
  private connection: Connection = 'idle';
  private retryMs = 0;
  private loaded = false;
  private loadError: ApiError | null = null;
  private authError: string | null = null;
  private me: IParticipantRef | null = null;
  private competitions: ICompetition[] = [];
  private boards = new Map<string, ILeaderboard>();
  private selectedId: number | null = null;
  private syncSeq = 0;
  private pendingBoards = new Map<number, number>();
  private statusTimer: number | null = null;

  private readonly header: HTMLElement;
  private readonly serverLabel: HTMLElement;
  private readonly liveLabel: HTMLElement;
  private readonly notice: HTMLElement;
  private readonly list: HTMLElement;
  private readonly detail: HTMLElement;

  constructor() {
    super();
    this.addClass('jp-CrowdsourcePanel');
    this.serverLabel = el('div', 'cs-server');
    this.liveLabel = el('span', 'cs-live');
    this.header = el('header', 'cs-header', null, [
      el('div', 'cs-title-row', null, [
        el('h2', 'cs-title', 'Crowdsource'),
        this.liveLabel
      ]),
      this.serverLabel
    ]);
    this.notice = el('div', 'cs-notice');
    this.notice.setAttribute('role', 'status');
    this.list = el('section', 'cs-competitions');
    this.detail = el('section', 'cs-board');
    for (const part of [this.header, this.notice, this.list, this.detail]) {
      this.node.appendChild(part);
    }
    this.render();
  }

  /** Apply the server and token; reconnects when either changed. */
  configure(
    serverUrl: string,
    token: string,
    source: IConnection['source'] = 'settings'
  ): void {
    const api = new CrowdsourceApi(serverUrl, token);
    this.tokenSource = source;
    const changed =
      !this.configured ||
      api.baseUrl !== this.api.baseUrl ||
      api.token !== this.api.token;
    this.api = api;
    this.configured = true;
    if (!changed) {
      return;
    }
    const wasStarted = this.stream !== null;
    this.stopStream();
    this.loaded = false;
    this.loadError = null;
    this.authError = null;
    this.me = null;
    this.competitions = [];
    this.boards.clear();
    if (wasStarted || this.isVisible) {
      this.startStream();
    }
    this.render();
  }

  get serverUrl(): string {
    return this.api.baseUrl;
  }

  dispose(): void {
    this.stopStream();
    if (this.statusTimer !== null) {
      window.clearTimeout(this.statusTimer);
    }
    super.dispose();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    if (this.isVisible) {
      this.renderDetail();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.onShow?.();
    if (this.configured && this.stream === null) {
      this.startStream();
      this.render();
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible && this.configured && this.stream === null) {
      this.startStream();
      this.render();
    }
  }

  // ---- connection --------------------------------------------------------

  private startStream(): void {
    this.connection = 'connecting';
    this.stream = new EventStream(this.api.eventsUrl(), {
      onHello: () => {
        this.connection = 'live';
        void this.resync();
      },
      onEvent: event => this.onEvent(event),
      onDown: retryMs => {
        this.connection = 'down';
        this.retryMs = retryMs;
        this.render();
      }
    });
    this.stream.start();
  }

  private stopStream(): void {
    this.stream?.stop();
    this.stream = null;
    this.connection = 'idle';
    for (const timer of this.pendingBoards.values()) {
      window.clearTimeout(timer);
    }
    this.pendingBoards.clear();
  }

  /** Reload everything by REST (after each `hello`). */
  private async resync(): Promise<void> {
    const seq = ++this.syncSeq;
    const api = this.api;
    try {
      const competitions = await api.competitions();
      let boards: ILeaderboard[];
      try {
        boards = await api.leaderboards();
      } catch (err) {
        if ((err as ApiError).kind !== 'http') {
          throw err;
        }
        boards = await Promise.all(competitions.map(c => api.leaderboard(c.id)));
      }
      if (seq !== this.syncSeq) {
        return;
      }
      this.competitions = competitions;
      this.boards.clear();
      for (const board of boards) {
        this.boards.set(boardKey(board.competition_id, board.board), board);
      }
      this.loaded = true;
      this.loadError = null;
    } catch (err) {
      if (seq !== this.syncSeq) {
        return;
      }
      this.loadError = this.asApiError(err);
    }
    await this.checkToken(api, seq);
    if (seq === this.syncSeq) {
      this.render();
    }
  }

  private async checkToken(api: CrowdsourceApi, seq: number): Promise<void> {
    if (!api.token) {
      this.me = null;
      this.authError = null;
      return;
    }
    try {
      const me = await api.me();
      if (seq === this.syncSeq) {
        this.me = me;
        this.authError = null;
      }
    } catch (err) {
      if (seq !== this.syncSeq) {
        return;
      }
      const error = this.asApiError(err);
      this.me = null;
      this.authError =
        error.kind === 'unauthorized'
          ? `Unauthorized: ${api.baseUrl} refused the ${this.tokenName()}. ` +
            'Showing public leaderboards only.'
          : `Could not check the token with ${api.baseUrl}: ${error.message}`;
    }
  }

  private tokenName(): string {
    return this.tokenSource === 'saved'
      ? 'token saved by `crowdsource register`'
      : 'token set in Settings › Crowdsource';
  }

  private asApiError(err: unknown): ApiError {
    return err instanceof ApiError
      ? err
      : new ApiError('http', err instanceof Error ? err.message : String(err));
  }

  // ---- events ------------------------------------------------------------

  private onEvent(event: IServerEvent): void {
    const cid = event.competition_id;
    switch (event.type) {
      case 'competition.created':
      case 'competition.closed':
        if (event.data && typeof event.data.id === 'number') {
          this.upsertCompetition(event.data as ICompetition);
          if (event.type === 'competition.closed') {
            void this.fetchBoard(event.data.id, 'private');
          }
          this.render();
        }
        break;
      case 'leaderboard.changed':
        if (event.data && Array.isArray(event.data.entries)) {
          const board = event.data as ILeaderboard;
          board.board = board.board ?? 'public';
          this.cancelPendingBoard(board.competition_id);
          this.boards.set(boardKey(board.competition_id, board.board), board);
          if (!this.competitions.some(c => c.id === board.competition_id)) {
            void this.resync();
          }
          this.render();
        }
        break;
      case 'submission.scored':
      case 'submission.failed':
      case 'competition.resolved':
        if (typeof cid === 'number') {
          this.scheduleBoard(cid);
        }
        break;
      default:
        break;
    }
  }

  private upsertCompetition(competition: ICompetition): void {
    const index = this.competitions.findIndex(c => c.id === competition.id);
    if (index >= 0) {
      this.competitions[index] = competition;
    } else {
      this.competitions.unshift(competition);
    }
    this.loaded = true;
  }

  /** Fetch a board unless a `leaderboard.changed` for it comes first. */
  private scheduleBoard(competitionId: number): void {
    if (this.pendingBoards.has(competitionId)) {
      return;
    }
    const timer = window.setTimeout(() => {
      this.pendingBoards.delete(competitionId);
      void this.fetchBoard(competitionId, 'public');
    }, BOARD_FALLBACK_MS);
    this.pendingBoards.set(competitionId, timer);
  }

  private cancelPendingBoard(competitionId: number): void {
    const timer = this.pendingBoards.get(competitionId);
    if (timer !== undefined) {
      window.clearTimeout(timer);
      this.pendingBoards.delete(competitionId);
    }
  }

  private async fetchBoard(
    competitionId: number,
    which: 'public' | 'private'
  ): Promise<void> {
    const api = this.api;
    try {
      const board = await api.leaderboard(competitionId, which);
      if (api !== this.api) {
        return;
      }
      board.board = board.board ?? which;
      this.boards.set(boardKey(competitionId, board.board), board);
      this.render();
    } catch {
      // A private board may not be readable; the public one stays shown.
    }
  }

  // ---- rendering -----------------------------------------------------------

  private myRank(competitionId: number): number | null {
    if (!this.me) {
      return null;
    }
    const board = this.boards.get(boardKey(competitionId, 'public'));
    const entry = board?.entries.find(e => isEntryOf(e, this.me!.id));
    return entry ? entry.rank : null;
  }

  /** The board to show: the final (private) one once there is one, else public. */
  private shownBoard(competitionId: number): ILeaderboard | null {
    return (
      this.boards.get(boardKey(competitionId, 'private')) ??
      this.boards.get(boardKey(competitionId, 'public')) ??
      null
    );
  }

  private render(): void {
    // Who we are by name only: the token itself is never put in the page.
    this.serverLabel.textContent =
      this.api.baseUrl + (this.me ? ` · as ${this.me.name}` : '');
    this.serverLabel.title =
      this.tokenSource === 'saved'
        ? 'Server and identity saved by `crowdsource register`'
        : 'Server URL (Settings › Crowdsource)';
    const live = this.connection === 'live';
    this.liveLabel.textContent = live ? '● live' : '○ offline';
    this.liveLabel.classList.toggle('cs-is-live', live);
    this.renderNotice();
    this.renderList();
    this.renderDetail();
    this.scheduleStatusRefresh();
  }

  private renderNotice(): void {
    const url = this.api.baseUrl;
    const notice = this.notice;
    notice.replaceChildren();
    notice.className = 'cs-notice';
    let state = '';
    let text = '';
    if (!this.configured) {
      state = 'loading';
      text = 'Loading settings…';
    } else if (this.connection === 'down') {
      state = 'unreachable';
      const seconds = Math.max(1, Math.round(this.retryMs / 1000));
      text =
        `Cannot reach the crowdsource server at ${url}. Retrying in ${seconds} s.` +
        (this.loaded ? ' Showing the last data received.' : '') +
        ' Check the server URL in Settings › Crowdsource.';
    } else if (this.loadError) {
      state = this.loadError.kind === 'unauthorized' ? 'unauthorized' : 'error';
      text = this.loadError.message;
    } else if (!this.loaded) {
      state = 'loading';
      text = `Connecting to ${url}…`;
    } else if (this.authError) {
      state = 'unauthorized';
      text = this.authError;
    } else if (this.competitions.length === 0) {
      state = 'empty';
      text = `No competitions on ${url} yet.`;
    }
    notice.dataset.state = state;
    notice.hidden = !state;
    if (!state) {
      return;
    }
    notice.classList.add(`cs-notice-${state}`);
    notice.appendChild(el('span', 'cs-notice-text', text));
    if (state === 'unreachable') {
      const button = el('button', 'jp-mod-styled cs-retry', 'Retry now');
      button.onclick = () => this.stream?.retryNow();
      notice.appendChild(button);
    }
  }

  private renderList(): void {
    const list = this.list;
    list.replaceChildren();
    if (this.competitions.length === 0) {
      return;
    }
    if (
      this.selectedId === null ||
      !this.competitions.some(c => c.id === this.selectedId)
    ) {
      this.selectedId = this.competitions[0].id;
    }
    const items = el('ul', 'cs-competition-list');
    items.setAttribute('role', 'listbox');
    items.setAttribute('aria-label', 'Competitions');
    for (const c of this.competitions) {
      const status = statusOf(c);
      const closes = c.closes_at
        ? `closes ${formatTime(c.closes_at)}`
        : 'no closing time';
      const meta = el('div', 'cs-c-meta', null, [
        el('span', 'cs-c-type', c.type),
        document.createTextNode(' · '),
        el('span', `cs-c-status cs-status-${status}`, status),
        document.createTextNode(' · '),
        el('span', 'cs-c-closes', closes)
      ]);
      const item = el('li', 'cs-competition', null, [
        el('div', 'cs-c-main', null, [el('div', 'cs-c-title', c.title), meta])
      ]);
      if (this.me !== null) {
        const rank = this.myRank(c.id);
        const badge = el('span', 'cs-c-rank', rank === null ? '—' : `#${rank}`);
        badge.title = rank === null ? 'You have no scored submission yet' : 'Your best rank';
        item.appendChild(badge);
      }
      item.dataset.competitionId = String(c.id);
      item.tabIndex = 0;
      item.setAttribute('role', 'option');
      item.setAttribute('aria-selected', String(c.id === this.selectedId));
      item.classList.toggle('cs-selected', c.id === this.selectedId);
      const select = () => {
        this.selectedId = c.id;
        this.render();
      };
      item.onclick = select;
      item.onkeydown = (event: KeyboardEvent) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select();
        }
      };
      items.appendChild(item);
    }
    list.appendChild(items);
  }

  private renderDetail(): void {
    const detail = this.detail;
    detail.replaceChildren();
    const competition = this.competitions.find(c => c.id === this.selectedId);
    if (!competition) {
      return;
    }
    detail.dataset.competitionId = String(competition.id);
    const board = this.shownBoard(competition.id);
    const metric = board?.metric ?? competition.metric;
    const higher = board?.higher_is_better ?? competition.higher_is_better;
    detail.appendChild(el('h3', 'cs-board-title', competition.title));
    const facts = [
      `${metric} (${higher ? 'higher' : 'lower'} is better)`,
      board ? `${board.board} board` : 'no board yet',
      `host ${competition.host?.name ?? '?'}`
    ];
    detail.appendChild(el('div', 'cs-board-meta', facts.join(' · ')));
    if (!board || board.entries.length === 0) {
      detail.appendChild(
        el('div', 'cs-board-empty', 'No scored submissions yet.')
      );
      return;
    }
    const myId = this.me ? this.me.id : null;
    detail.appendChild(leaderboardChart(board, myId, detail.clientWidth || 300));
    const table = el('table', 'cs-table cs-leaderboard-table');
    table.appendChild(
      el('thead', '', null, [
        el(
          'tr',
          '',
          null,
          [
            ['#', 'Rank'],
            ['Name', 'Participant'],
            ['Best', 'Best score'],
            ['Subs', 'Submissions'],
            ['Last', 'Last submission']
          ].map(([label, title]) => {
            const th = el('th', '', label);
            th.title = title;
            return th;
          })
        )
      ])
    );
    const body = el('tbody');
    for (const entry of board.entries) {
      const row = el('tr', 'cs-entry', null, [
        el('td', 'cs-e-rank', String(entry.rank)),
        el('td', 'cs-e-name', entryName(entry)),
        el('td', 'cs-e-score', formatScore(entry.score)),
        el('td', 'cs-e-subs', String(entry.submissions)),
        el('td', 'cs-e-last', formatShortTime(entry.last_submission_at))
      ]);
      (row.lastChild as HTMLElement).title = formatTime(entry.last_submission_at);
      row.dataset.participantId = String(entry.participant.id);
      row.classList.toggle('cs-mine', myId !== null && isEntryOf(entry, myId));
      body.appendChild(row);
    }
    table.appendChild(body);
    detail.appendChild(table);
  }

  /** Re-render when a competition opens or closes by the clock (one timer, not polling). */
  private scheduleStatusRefresh(): void {
    if (this.statusTimer !== null) {
      window.clearTimeout(this.statusTimer);
      this.statusTimer = null;
    }
    const now = Date.now();
    let next = Infinity;
    for (const c of this.competitions) {
      if (c.status === 'closed') {
        continue;
      }
      for (const iso of [c.opens_at, c.closes_at]) {
        const t = iso ? Date.parse(iso) : NaN;
        if (!isNaN(t) && t > now && t < next) {
          next = t;
        }
      }
    }
    if (next !== Infinity) {
      this.statusTimer = window.setTimeout(
        () => {
          this.statusTimer = null;
          this.render();
        },
        Math.min(MAX_TIMER_MS, next - now + 50)
      );
    }
  }
}
