/**
 * The board view shared by the page, the panel and the widget (spec: `table.cs-board`,
 * rows `tr[data-entry]`, `input.cs-search`, `.cs-you`, `.cs-chart`, `.cs-status`).
 * Every server string is set with textContent.
 */
import { Charts, PlotlyLoader } from './charts';
import {
  el,
  formatPlace,
  formatRank,
  formatScore,
  formatShortTime,
  formatTime
} from './dom';
import { findByName, SearchIndex } from './search';
import {
  entryName,
  Board,
  Entry,
  IHistoryPoint,
  isEntryOf,
  BoardYou
} from './types';

/** What the view shows; a face builds it from a LiveBoard, traitlets, or both. */
export interface IBoardState {
  board: Board | null;
  you: BoardYou | null;
  around: Entry[];
  history: IHistoryPoint[];
  /** The participant to highlight (null: nobody). */
  me: number | null;
  /** The connection, as a person reads it ("● live", "reconnecting in 2 s"). */
  status: string;
}

const COLUMNS: [string, string, string][] = [
  ['cs-rank', '#', 'Rank'],
  ['cs-name', 'Name', 'Participant or team'],
  ['cs-score', 'Best', 'Best public score'],
  ['cs-subs', 'Subs', 'Submissions'],
  ['cs-last', 'Last', 'Last submission']
];

/** One entry's row. */
export function entryRow(entry: Entry, me: number | null): HTMLTableRowElement {
  const last = el('td', 'cs-last', formatShortTime(entry.last_submission_at));
  last.title = formatTime(entry.last_submission_at);
  const row = el('tr', 'cs-entry', null, [
    el('td', 'cs-rank', formatRank(entry.rank)),
    el('td', 'cs-name', entryName(entry)),
    el('td', 'cs-score', formatScore(entry.score)),
    el('td', 'cs-subs', String(entry.submissions)),
    last
  ]);
  row.dataset.entry = String(entry.participant.id);
  if (me !== null && isEntryOf(entry, me)) {
    row.classList.add('cs-mine');
  }
  return row;
}

/** The viewer's place: from `leaderboard.you`, else their entry in the top window. */
export function placeOf(state: IBoardState): string {
  if (state.you) {
    return formatPlace(state.you.rank, state.you.total);
  }
  const me = state.me;
  const mine =
    me === null ? undefined : state.board?.entries.find(e => isEntryOf(e, me));
  return mine && state.board ? formatPlace(mine.rank, state.board.total) : '';
}

export class BoardView {
  readonly node: HTMLElement;
  private readonly status = el('span', 'cs-status');
  private readonly you = el('span', 'cs-you');
  private readonly search = el('input', 'cs-search');
  private readonly note = el('div', 'cs-search-note');
  private readonly top = el('tbody', 'cs-top');
  private readonly around = el('tbody', 'cs-around');
  private readonly results = el('tbody', 'cs-results');
  private readonly more = el('div', 'cs-more');
  private readonly charts: Charts;
  private state: IBoardState | null = null;
  private frame: number | null = null;
  private searchedVersion: number | null = null;

  constructor(
    plotly: PlotlyLoader,
    private readonly index: SearchIndex | null = null
  ) {
    this.search.type = 'search';
    this.search.placeholder = 'Search by name';
    this.search.setAttribute('aria-label', 'Search the board by name');
    this.search.oninput = () => this.renderSearch();
    this.search.onfocus = () => this.loadIndex();
    this.charts = new Charts(plotly);
    const table = el('table', 'cs-board', null, [
      el('thead', '', null, [
        el(
          'tr',
          '',
          null,
          COLUMNS.map(([cls, label, title]) => {
            const th = el('th', `cs-col-${cls.slice(3)}`, label);
            th.title = title;
            return th;
          })
        )
      ]),
      this.top,
      this.around,
      this.results
    ]);
    this.node = el('div', 'cs-view', null, [
      el('div', 'cs-view-head', null, [this.status, this.you, this.search]),
      this.note,
      table,
      this.more,
      this.charts.node
    ]);
    this.results.hidden = true;
  }

  /** Show `state`: the table at once, the charts when plotly has loaded. */
  update(state: IBoardState): void {
    this.state = state;
    this.renderTable();
    if (this.frame === null && typeof requestAnimationFrame === 'function') {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.renderCharts();
      });
    }
  }

  /** Draw the charts now (after the node was attached or resized). */
  renderCharts(): void {
    const state = this.state;
    if (state?.board) {
      this.charts.update(state.board, state.history, state.me);
    }
  }

  dispose(): void {
    if (this.frame !== null) {
      cancelAnimationFrame(this.frame);
    }
    this.charts.dispose();
  }

  private renderTable(): void {
    const state = this.state!;
    this.status.textContent = state.status;
    const place = placeOf(state);
    this.you.textContent = place;
    this.you.hidden = !place;
    const board = state.board;
    const entries = board?.entries ?? [];
    this.top.replaceChildren(...entries.map(e => entryRow(e, state.me)));
    const shown = new Set(entries.map(e => e.participant.id));
    const around = state.around.filter(e => !shown.has(e.participant.id));
    const gap = el('tr', 'cs-gap', null, [el('td', '', '…')]);
    (gap.firstChild as HTMLTableCellElement).colSpan = COLUMNS.length;
    this.around.replaceChildren(
      ...(around.length ? [gap] : []),
      ...around.map(e => entryRow(e, state.me))
    );
    this.more.textContent =
      board && board.total > entries.length
        ? `Showing the top ${entries.length} of ${board.total.toLocaleString('en-US')}.`
        : board && entries.length === 0
          ? 'No scored submissions yet.'
          : '';
    if (board && board.version !== this.searchedVersion) {
      this.searchedVersion = board.version;
      this.index?.invalidate();
    }
    this.renderSearch();
  }

  private loadIndex(): void {
    if (this.index) {
      void this.index.ensure().then(() => this.renderSearch());
    }
  }

  private renderSearch(): void {
    const query = this.search.value.trim();
    const searching = query !== '';
    this.top.hidden = searching;
    this.around.hidden = searching;
    this.results.hidden = !searching;
    if (!searching) {
      this.note.textContent = '';
      this.results.replaceChildren();
      return;
    }
    const live = this.state?.board?.entries ?? [];
    if (this.index && !this.index.ready && !this.index.error) {
      this.loadIndex();
    }
    const found = this.index
      ? this.index.find(query, live)
      : findByName(live, query);
    const me = this.state?.me ?? null;
    this.results.replaceChildren(...found.entries.map(e => entryRow(e, me)));
    const loading = this.index !== null && !this.index.ready;
    this.note.textContent =
      (found.count === 0 ? 'No name matches.' : `${found.count} matching.`) +
      (found.count > found.entries.length
        ? ` Showing the first ${found.entries.length}.`
        : '') +
      (loading ? ' Searching the whole board…' : '') +
      (this.index?.error ? ` ${this.index.error}` : '');
  }
}
