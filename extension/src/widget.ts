/**
 * The notebook widget's front end (an anywidget ESM, bundled to crowdsource/static/widget.js).
 * It renders at once from the synced traitlets (so a reload or a second view shows the
 * current board) and, when the browser can reach `server_url`, follows its event stream
 * itself (anonymous, `competition=ID`). It never writes traitlets.
 */
import { CrowdsourceApi } from './api';
import { connectionText } from './app';
import { boardOfSnapshot, LiveBoard } from './board';
import { offeredPlotly, PlotlyLoader } from './charts';
import { el } from './dom';
import { boardLoader, SearchIndex } from './search';
import { injectStyle } from './style';
import { Board, IHistoryPoint } from './types';
import { BoardView } from './view';

/** The part of anywidget's model used here (read only). */
export interface IWidgetModel {
  get(name: string): any;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
}

const TRAITS = [
  'server_url',
  'competition_id',
  'competition',
  'board',
  'history',
  'me',
  'you',
  'around',
  'status'
];

/** plotly.js-basic: the JupyterLab extension's copy when it is on the page (cached by the
 * browser), else the one inlined in this module, evaluated only when the first chart is drawn. */
const plotly: PlotlyLoader = offeredPlotly(() =>
  import('plotly.js-basic-dist-min').then(m => (m.default ?? m) as any)
);

/** The kernel's board, or null before it sent one. */
function traitBoard(model: IWidgetModel): Board | null {
  const board = model.get('board');
  return board && Array.isArray(board.entries) ? boardOfSnapshot(board) : null;
}

/** The browser's own follower of the server, when it has a server to follow. */
function follow(model: IWidgetModel): LiveBoard | null {
  const url = model.get('server_url');
  const id = model.get('competition_id');
  if (!url || !id) {
    return null;
  }
  return new LiveBoard({
    api: new CrowdsourceApi(url),
    competitionId: id,
    rest: false
  });
}

export function render({
  model,
  el: root
}: {
  model: IWidgetModel;
  el: HTMLElement;
}) {
  injectStyle(root.ownerDocument);
  const title = el('h3', 'cs-board-title');
  let live: LiveBoard | null = null;
  let view: BoardView | null = null;

  const show = () => {
    // Versions of two connections cannot be compared: the browser's own board, while its
    // stream is up, is the newer one; else the kernel's.
    const direct = live?.connection === 'live' && live.board !== null;
    const board = direct ? live!.board : traitBoard(model);
    const kept: IHistoryPoint[] = model.get('history') ?? [];
    const last = kept.length ? kept[kept.length - 1].at : '';
    const seen = direct ? live!.history.points.filter(p => p.at > last) : [];
    const competition = model.get('competition') ?? {};
    title.textContent = board?.title ?? competition.title ?? '';
    view!.update({
      board,
      // The browser follows anonymously: the viewer's place is the kernel's.
      you: model.get('you')?.rank !== undefined ? model.get('you') : null,
      around: model.get('around') ?? [],
      history: kept.concat(seen),
      me: model.get('me') || null,
      status: direct ? connectionText('live', 0) : model.get('status') || ''
    });
  };

  const restart = () => {
    live?.stop();
    view?.dispose();
    live = follow(model);
    const index = live
      ? new SearchIndex(boardLoader(live.api, live.competitionId))
      : null;
    view = new BoardView(plotly, index);
    root.replaceChildren(el('div', 'cs-widget', null, [title, view.node]));
    live?.subscribe(show);
    show();
    live?.start();
  };

  const events = TRAITS.map(name => `change:${name}`);
  const onChange = (event: string) =>
    event === 'change:server_url' || event === 'change:competition_id'
      ? restart
      : show;
  const handlers = events.map(event => [event, onChange(event)] as const);
  for (const [event, handler] of handlers) {
    model.on(event, handler);
  }
  restart();
  return () => {
    for (const [event, handler] of handlers) {
      model.off(event, handler);
    }
    live?.stop();
    view?.dispose();
  };
}

export default { render };
