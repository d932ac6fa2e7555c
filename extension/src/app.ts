/**
 * The competitions list and the selected competition's live board: the whole of the
 * /leaderboard page and of the JupyterLab panel (each face adds its own header).
 */
import { CrowdsourceApi } from './api';
import { Connection, LiveBoard, throttled } from './board';
import { PlotlyLoader } from './charts';
import { CompetitionsModel } from './competitions';
import { el, formatTime } from './dom';
import { boardLoader, SearchIndex } from './search';
import { SocketFactory } from './stream';
import { injectStyle } from './style';
import { Competition, Named, isEntryOf } from './types';
import { ROW_LIMIT, StandingsView } from './standings';
import { BoardView } from './view';

/** Standings are read again at most this often (each push may be a `leaderboard.changed`). */
export const STANDINGS_EVERY_MS = 2000;

/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 24 * 3600 * 1000;

/** Run `fn` once the next frame has been painted (at once where there are no frames). */
function afterPaint(fn: () => void): void {
  if (typeof requestAnimationFrame === 'function') {
    requestAnimationFrame(() => setTimeout(fn, 0));
  } else {
    fn();
  }
}

/** The status now, from the UTC times (the server's value may be stale by now). */
export function statusOf(
  c: Competition,
  now = Date.now()
): Competition['status'] {
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

/** A connection as a person reads it. */
export function connectionText(
  connection: Connection,
  retryMs: number
): string {
  switch (connection) {
    case 'live':
      return '● live';
    case 'down':
      return `○ reconnecting in ${Math.max(1, Math.round(retryMs / 1000))} s`;
    case 'connecting':
      return 'connecting…';
    default:
      return '○ offline';
  }
}

export interface IAppOptions {
  plotly: PlotlyLoader;
  /** Called when the selection changes (the page keeps it in the URL). */
  onSelect?: (competitionId: number) => void;
  /** Called after each render (the panel shows who the viewer is). */
  onRender?: () => void;
  open?: SocketFactory;
}

export class LeaderboardApp {
  readonly node: HTMLElement;
  /** `● live` / `○ offline`: the competitions stream. */
  readonly live = el('span', 'cs-live');
  private readonly notice = el('div', 'cs-notice');
  private readonly list = el('section', 'cs-competitions');
  private readonly detail = el('section', 'cs-detail');
  private model: CompetitionsModel | null = null;
  private board: LiveBoard | null = null;
  private view: BoardView | null = null;
  private standings: StandingsView | null = null;
  private refreshStandings: () => void = () => undefined;
  /** Let the standings be read (after the board's first paint, or when there is none). */
  private releaseStandings: () => void = () => undefined;
  private selectedId: number | null = null;
  private showBoard: (() => void) | null = null;
  /** Words for the "token refused" notice (where the token came from). */
  tokenName = 'token';
  private statusTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly options: IAppOptions) {
    injectStyle();
    this.notice.setAttribute('role', 'status');
    this.node = el('div', 'cs-app', null, [
      this.notice,
      this.list,
      this.detail
    ]);
  }

  get api(): CrowdsourceApi | null {
    return this.model?.api ?? null;
  }

  /** The viewer the token belongs to, once the server said. */
  get me(): Named | null {
    return this.model?.me ?? null;
  }

  /** Follow `api`'s server (again from scratch). */
  connect(api: CrowdsourceApi): void {
    this.stop();
    this.model = new CompetitionsModel(api, this.options.open);
    this.model.subscribe(() => this.render());
    this.openStandings(this.model);
    this.model.start();
  }

  /**
   * The standings section: read on each hello, a closed round or a changed board; the first
   * read waits until the board painted; it asks for the best `ROW_LIMIT` rows of each.
   */
  private openStandings(model: CompetitionsModel): void {
    const standings = new StandingsView({
      load: type => model.api.standings(type, ROW_LIMIT),
      plotly: this.options.plotly
    });
    const read = throttled(() => {
      if (this.standings === standings) {
        void standings.refresh();
      }
    }, STANDINGS_EVERY_MS);
    let waiting = true;
    let asked = false;
    this.refreshStandings = () => {
      asked = true;
      if (!waiting) {
        read();
      }
    };
    this.releaseStandings = () => {
      if (waiting) {
        waiting = false;
        if (asked) {
          read();
        }
      }
    };
    model.subscribeFrames(frame => {
      if (
        frame.type === 'hello' ||
        frame.type === 'competition.closed' ||
        frame.type === 'leaderboard.changed'
      ) {
        this.refreshStandings();
      }
    });
    this.standings = standings;
    this.node.appendChild(standings.node);
  }

  stop(): void {
    this.model?.stop();
    this.model = null;
    this.closeBoard();
    this.standings?.dispose();
    this.standings?.node.remove();
    this.standings = null;
    if (this.statusTimer !== null) {
      clearTimeout(this.statusTimer);
      this.statusTimer = null;
    }
  }

  /** Show this competition's board (the first one listed if it is not there). */
  select(competitionId: number | null): void {
    this.selectedId = competitionId;
    this.render();
  }

  /** Redraw the charts (the face was shown or resized). */
  resized(): void {
    this.view?.renderCharts();
    this.standings?.renderChart();
  }

  private closeBoard(): void {
    this.board?.stop();
    this.view?.dispose();
    this.board = null;
    this.view = null;
    this.showBoard = null;
    this.detail.replaceChildren();
  }

  render(): void {
    const model = this.model;
    const live = model?.connection === 'live';
    this.live.textContent = live ? '● live' : '○ offline';
    this.live.classList.toggle('cs-is-live', live);
    this.renderNotice();
    if (model) {
      this.renderModel(model);
    }
    this.options.onRender?.();
  }

  private renderModel(model: CompetitionsModel): void {
    const competitions = model.competitions;
    // Keep the chosen id (the page's #ID) until a list arrived that lacks it.
    if (
      competitions.length > 0 &&
      !competitions.some(c => c.id === this.selectedId)
    ) {
      this.selectedId = competitions.length ? competitions[0].id : null;
    }
    this.renderList();
    this.renderDetail();
    const selected = competitions.find(c => c.id === this.selectedId);
    if (selected && this.standings?.suggest(selected.type)) {
      this.refreshStandings();
    }
    if (model.loaded && !selected) {
      this.releaseStandings();
    }
    this.scheduleStatusRefresh();
  }

  private renderNotice(): void {
    const model = this.model;
    const url = model?.api.baseUrl ?? '';
    let state = '';
    let text = '';
    if (!model) {
      state = 'loading';
      text = 'Loading settings…';
    } else if (model.connection === 'down') {
      state = 'unreachable';
      const seconds = Math.max(1, Math.round(model.retryMs / 1000));
      text =
        `Cannot reach the crowdsource server at ${url}. Retrying in ${seconds} s.` +
        (model.loaded ? ' Showing the last data received.' : '');
    } else if (model.error) {
      state = model.error.kind === 'unauthorized' ? 'unauthorized' : 'error';
      text = model.error.message;
    } else if (!model.loaded) {
      state = 'loading';
      text = `Connecting to ${url}…`;
    } else if (model.authError) {
      state = 'unauthorized';
      text =
        model.authError.kind === 'unauthorized'
          ? `Unauthorized: ${url} refused the ${this.tokenName}. ` +
            'Showing public leaderboards only.'
          : `Could not check the token with ${url}: ${model.authError.message}`;
    } else if (model.competitions.length === 0) {
      state = 'empty';
      text = `No competitions on ${url} yet.`;
    }
    const notice = this.notice;
    notice.replaceChildren();
    notice.className = state ? `cs-notice cs-notice-${state}` : 'cs-notice';
    notice.dataset.state = state;
    notice.hidden = !state;
    if (state) {
      notice.appendChild(el('span', 'cs-notice-text', text));
    }
    if (state === 'unreachable') {
      const button = el('button', 'jp-mod-styled cs-retry', 'Retry now');
      button.onclick = () => {
        this.model?.retryNow();
        this.board?.retryNow();
      };
      notice.appendChild(button);
    }
  }

  private renderList(): void {
    const model = this.model!;
    if (model.competitions.length === 0) {
      this.list.replaceChildren();
      return;
    }
    const items = el('ul', 'cs-competition-list');
    items.setAttribute('role', 'listbox');
    items.setAttribute('aria-label', 'Competitions');
    for (const c of model.competitions) {
      items.appendChild(this.listItem(c, model));
    }
    this.list.replaceChildren(items);
  }

  private listItem(c: Competition, model: CompetitionsModel): HTMLElement {
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
    if (model.me !== null) {
      const rank = model.ranks.get(c.id) ?? null;
      const badge = el('span', 'cs-c-rank', rank === null ? '—' : `#${rank}`);
      badge.title =
        rank === null ? 'You have no scored submission yet' : 'Your best rank';
      item.appendChild(badge);
    }
    const selected = c.id === this.selectedId;
    item.dataset.competitionId = String(c.id);
    item.tabIndex = 0;
    item.setAttribute('role', 'option');
    item.setAttribute('aria-selected', String(selected));
    item.classList.toggle('cs-selected', selected);
    const select = () => {
      this.select(c.id);
      this.options.onSelect?.(c.id);
    };
    item.onclick = select;
    item.onkeydown = (event: KeyboardEvent) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        select();
      }
    };
    return item;
  }

  private renderDetail(): void {
    const model = this.model!;
    const competition = model.competitions.find(c => c.id === this.selectedId);
    if (!competition) {
      this.closeBoard();
      return;
    }
    if (this.board?.competitionId !== competition.id) {
      this.openBoard(competition, model);
    } else {
      this.showBoard?.();
    }
    const board = this.board!.board;
    const metric = board?.metric || competition.metric;
    const higher = board?.higher_is_better ?? competition.higher_is_better;
    const facts = [
      `${metric} (${higher ? 'higher' : 'lower'} is better)`,
      statusOf(competition),
      `host ${competition.host.name}`
    ];
    const [title, info, description] = Array.from(this.detail.children).slice(
      0,
      3
    );
    title.textContent = competition.title;
    info.textContent = facts.join(' · ');
    description.textContent = competition.description;
    this.detail.dataset.competitionId = String(competition.id);
  }

  private openBoard(competition: Competition, model: CompetitionsModel): void {
    this.closeBoard();
    // The token only once the server accepted it (it brings `leaderboard.you`).
    const api = model.me ? model.api : new CrowdsourceApi(model.api.baseUrl);
    const board = new LiveBoard({
      api,
      competitionId: competition.id,
      meta: {
        title: competition.title,
        metric: competition.metric,
        higher_is_better: competition.higher_is_better
      },
      open: this.options.open
    });
    const index = new SearchIndex(boardLoader(api, competition.id));
    const view = new BoardView(this.options.plotly, index);
    this.detail.replaceChildren(
      el('h2', 'cs-board-title'),
      el('div', 'cs-board-meta'),
      el('p', 'cs-board-desc'),
      view.node
    );
    const show = () => {
      view.update({
        board: board.board,
        you: board.you,
        around: board.around,
        history: board.history.points,
        me: model.me?.id ?? null,
        status: connectionText(board.connection, board.retryMs)
      });
      if (board.board !== null || board.error !== null) {
        afterPaint(() => this.releaseStandings());
      }
      const me = model.me;
      const mine = me && board.board?.entries.find(e => isEntryOf(e, me.id));
      if (board.you || mine) {
        model.setRank(competition.id, board.you ? board.you.rank : mine!.rank);
      }
    };
    board.subscribe(show);
    this.board = board;
    this.view = view;
    this.showBoard = show;
    show();
    board.start();
  }

  /** Re-render when a competition opens or closes by the clock (one timer, not polling). */
  private scheduleStatusRefresh(): void {
    if (this.statusTimer !== null) {
      clearTimeout(this.statusTimer);
      this.statusTimer = null;
    }
    const now = Date.now();
    let next = Infinity;
    for (const c of this.model?.competitions ?? []) {
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
      this.statusTimer = setTimeout(
        () => {
          this.statusTimer = null;
          this.render();
        },
        Math.min(MAX_TIMER_MS, next - now + 50)
      );
    }
  }
}
