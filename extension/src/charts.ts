/**
 * Plotly charts of a board: a bar of the top scores and the best score over time. Plotly
 * is loaded lazily through a loader each face sets (the page: the server's
 * /static/plotly.min.js; the panel and widget: the bundled plotly.js-basic-dist-min), so
 * the table shows first. Plotly reads a little HTML in its text: every server string goes
 * through `plotlyText`.
 */
import { formatScore } from './dom';
import { entryName, Board, IHistoryPoint, isEntryOf } from './types';

/** The part of plotly.js used here. */
export interface IPlotly {
  react(
    node: HTMLElement,
    data: object[],
    layout: object,
    config?: object
  ): unknown;
  purge(node: HTMLElement): void;
}

export type PlotlyLoader = () => Promise<IPlotly>;

// Where the JupyterLab extension offers its plotly.js to the notebook widget on the same page.
const OFFERED = Symbol.for('crowdsource-jupyterlab:plotly');

/** Offer `loader` to the other faces on this page (the JupyterLab extension does). */
export function offerPlotly(loader: PlotlyLoader): void {
  (globalThis as any)[OFFERED] = loader;
}

/** The loader offered on this page, or `fallback`. */
export function offeredPlotly(fallback: PlotlyLoader): PlotlyLoader {
  return () => ((globalThis as any)[OFFERED] ?? fallback)();
}

export const BAR_LIMIT = 15;
export const LINE_LIMIT = 10;

/** A server string as Plotly text: `<` and `&` escaped, so it is shown, never read as markup. */
export function plotlyText(value: string): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

const FONT = { family: 'system-ui, sans-serif', size: 12 };

/** The bar chart's traces and layout (top `BAR_LIMIT` scored entries). */
export function barFigure(
  board: Board,
  me: number | null
): { data: object[]; layout: object } | null {
  const scored = board.entries
    .filter(e => e.score !== null && Number.isFinite(e.score))
    .slice(0, BAR_LIMIT);
  if (scored.length === 0) {
    return null;
  }
  const labels = scored.map(e => plotlyText(`${e.rank}. ${entryName(e)}`));
  const data = [
    {
      type: 'bar',
      orientation: 'h',
      x: scored.map(e => e.score),
      y: labels,
      hovertext: scored.map(e =>
        plotlyText(`${entryName(e)}: ${formatScore(e.score)}`)
      ),
      hoverinfo: 'text',
      marker: {
        color: scored.map(e =>
          me !== null && isEntryOf(e, me) ? '#ff7f0e' : '#1f77b4'
        )
      }
    }
  ];
  const direction = board.higher_is_better ? 'higher' : 'lower';
  const layout = {
    title: {
      text: plotlyText(`best ${board.metric} (${direction} is better)`),
      font: { size: 13 }
    },
    font: FONT,
    height: 60 + 22 * scored.length,
    margin: { l: 8, r: 16, t: 32, b: 24 },
    xaxis: { nticks: 4, tickangle: 0, automargin: true },
    yaxis: { autorange: 'reversed', automargin: true, type: 'category' },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)'
  };
  return { data, layout };
}

/** The line chart: the best score over time of the top `LINE_LIMIT` entries. */
export function lineFigure(
  board: Board,
  history: IHistoryPoint[]
): { data: object[]; layout: object } | null {
  const top = board.entries.filter(e => e.score !== null).slice(0, LINE_LIMIT);
  // Each line runs on to the newest point of all, so a single improvement still shows.
  const newest = history.reduce((max, p) => (p.at > max ? p.at : max), '');
  const data: object[] = [];
  for (const entry of top) {
    const points = history
      .filter(p => p.participant_id === entry.participant.id)
      .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    if (points.length === 0) {
      continue;
    }
    const last = points[points.length - 1];
    const tail = last.at < newest ? [{ ...last, at: newest }] : [];
    data.push({
      type: 'scatter',
      mode: 'lines+markers',
      line: { shape: 'hv' },
      name: plotlyText(entryName(entry)),
      x: points.concat(tail).map(p => p.at),
      y: points.concat(tail).map(p => p.score),
      hovertext: points.map(p =>
        plotlyText(`${p.name}: ${formatScore(p.score)}`)
      ),
      hoverinfo: 'text+x'
    });
  }
  if (data.length === 0) {
    return null;
  }
  const layout = {
    title: { text: 'best score over time', font: { size: 13 } },
    font: FONT,
    height: 300,
    margin: { l: 8, r: 16, t: 32, b: 8 },
    xaxis: { nticks: 3, tickangle: 0, automargin: true },
    yaxis: { automargin: true },
    showlegend: true,
    legend: { orientation: 'h', y: -0.15, yanchor: 'top' },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)'
  };
  return { data, layout };
}

/** The `.cs-chart` container: draws once plotly is loaded, the latest state only. */
export class Charts {
  readonly node: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly line: HTMLElement;
  private plotly: IPlotly | null = null;
  private loading = false;
  private pending: [Board, IHistoryPoint[], number | null] | null = null;

  constructor(private readonly loader: PlotlyLoader) {
    this.node = document.createElement('div');
    this.node.className = 'cs-chart';
    this.bar = document.createElement('div');
    this.bar.className = 'cs-chart-bar';
    this.line = document.createElement('div');
    this.line.className = 'cs-chart-line';
    this.node.append(this.bar, this.line);
  }

  update(board: Board, history: IHistoryPoint[], me: number | null): void {
    this.pending = [board, history, me];
    if (this.plotly) {
      this.draw();
    } else if (!this.loading) {
      this.loading = true;
      this.loader()
        .then(plotly => {
          this.plotly = plotly;
          this.draw();
        })
        .catch(err => {
          this.node.dataset.error = String(err);
        });
    }
  }

  dispose(): void {
    if (this.plotly) {
      this.plotly.purge(this.bar);
      this.plotly.purge(this.line);
    }
  }

  private draw(): void {
    if (!this.plotly || !this.pending || !this.node.isConnected) {
      return;
    }
    const [board, history, me] = this.pending;
    const config = { displayModeBar: false, responsive: true };
    for (const [node, figure] of [
      [this.bar, barFigure(board, me)],
      [this.line, lineFigure(board, history)]
    ] as const) {
      node.hidden = figure === null;
      if (figure === null) {
        this.plotly.purge(node);
      } else {
        this.plotly.react(node, figure.data, figure.layout, config);
      }
    }
  }
}
