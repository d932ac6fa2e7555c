/**
 * The standings view shared by the page and the panel (issue 15): functions and participants
 * ranked across the rounds of a competition type (`GET /api/v1/standings?type=`), and a
 * Plotly chart of rank over rounds. DOM: `table.cs-standings` with rows
 * `tr[data-function="<digest>"]` / `tr[data-participant="<id>"]`, chart `.cs-standings-chart`.
 * Names and titles are text: textContent in the tables, `plotlyText` in the chart.
 */
import { IPlotly, PlotlyLoader, plotlyText } from './charts';
import { el } from './dom';
import {
  Competition,
  FunctionStanding,
  ParticipantStanding,
  Standings
} from './types';

export type CompetitionType = Competition['type'];
export const TYPES: CompetitionType[] = [
  'classify',
  'regress',
  'predict',
  'cluster'
];
/** How many functions the chart draws a line for (the best first). */
export const CHART_LIMIT = 10;
/** How many rows each table shows (the best first): a type may have thousands. */
export const ROW_LIMIT = 50;

/** A mean normalised rank as a person reads it (0 best, 1 last). */
export function formatNormalised(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : '—';
}

/** "Showing the best 50 of 10,000 participants." when a table is cut, else "". */
export function moreText(count: number, what: string): string {
  return count > ROW_LIMIT
    ? `Showing the best ${ROW_LIMIT} of ${count.toLocaleString('en-US')} ${what}.`
    : '';
}

/** A header row of `labels`. */
function head(labels: string[]): HTMLElement {
  return el('thead', '', null, [
    el(
      'tr',
      '',
      null,
      labels.map(label => el('th', '', label))
    )
  ]);
}

/** One function's row. */
export function functionRow(row: FunctionStanding): HTMLTableRowElement {
  const tr = el('tr', 'cs-function', null, [
    el('td', 'cs-fn-name', row.function.name),
    el('td', 'cs-fn-version', `v${row.function.version}`),
    el('td', 'cs-fn-participant', row.participant.name),
    el('td', 'cs-fn-rounds', String(row.rounds)),
    el('td', 'cs-fn-mean', formatNormalised(row.mean_normalised_rank)),
    el('td', 'cs-fn-wins', String(row.wins))
  ]);
  tr.dataset.function = row.function.digest;
  return tr;
}

/** One participant's row. */
export function participantRow(row: ParticipantStanding): HTMLTableRowElement {
  const tr = el('tr', 'cs-participant', null, [
    el('td', 'cs-p-name', row.participant.name),
    el('td', 'cs-p-rounds', String(row.rounds)),
    el('td', 'cs-p-mean', formatNormalised(row.mean_normalised_rank)),
    el('td', 'cs-p-wins', String(row.wins))
  ]);
  tr.dataset.participant = String(row.participant.id);
  return tr;
}

/** The chart's traces and layout: rank over rounds of the best `CHART_LIMIT` functions. */
export function rankFigure(
  standings: Standings
): { data: object[]; layout: object } | null {
  const labels = standings.rounds.map(r =>
    plotlyText(`${standings.rounds.indexOf(r) + 1}. ${r.title}`)
  );
  const column = new Map(standings.rounds.map((r, i) => [r.competition_id, i]));
  const data = standings.functions.slice(0, CHART_LIMIT).map(row => {
    const ranks = [...row.ranks].sort(
      (a, b) =>
        (column.get(a.competition_id) ?? 0) -
        (column.get(b.competition_id) ?? 0)
    );
    const name = `${row.function.name} v${row.function.version} (${row.participant.name})`;
    return {
      type: 'scatter',
      mode: 'lines+markers',
      name: plotlyText(name),
      x: ranks.map(r => labels[column.get(r.competition_id) ?? 0]),
      y: ranks.map(r => r.rank),
      hovertext: ranks.map(r => plotlyText(`${name}: #${r.rank} of ${r.of}`)),
      hoverinfo: 'text'
    };
  });
  if (data.length === 0) {
    return null;
  }
  const worst = Math.max(...data.flatMap(trace => trace.y));
  const layout = {
    title: { text: 'rank over rounds', font: { size: 13 } },
    font: { family: 'system-ui, sans-serif', size: 12 },
    height: 300,
    margin: { l: 8, r: 16, t: 32, b: 8 },
    xaxis: { type: 'category', categoryarray: labels, automargin: true },
    yaxis: {
      autorange: 'reversed',
      automargin: true,
      title: { text: 'rank' },
      // Whole ranks only (Plotly would tick 1.5 on a short axis).
      ...(worst <= 10 ? { tick0: 1, dtick: 1 } : {})
    },
    showlegend: true,
    legend: { orientation: 'h', y: -0.2, yanchor: 'top' },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)'
  };
  return { data, layout };
}

export interface IStandingsOptions {
  /** Read one type's standings (REST): the best `ROW_LIMIT` rows of each table will do. */
  load: (type: CompetitionType) => Promise<Standings>;
  plotly: PlotlyLoader;
}

/** A type chooser, the two tables and the chart; `refresh()` reads the standings again. */
export class StandingsView {
  readonly node: HTMLElement;
  private readonly select = el('select', 'cs-standings-type');
  private readonly note = el('div', 'cs-standings-note');
  private readonly functions = el('tbody');
  private readonly participants = el('tbody');
  private readonly moreFunctions = el('div', 'cs-standings-more');
  private readonly moreParticipants = el('div', 'cs-standings-more');
  private readonly chart = el('div', 'cs-standings-chart');
  private plotly: IPlotly | null = null;
  private chosen = false;
  private seq = 0;
  private shown: Standings | null = null;

  constructor(private readonly options: IStandingsOptions) {
    for (const type of TYPES) {
      const option = el('option', '', type);
      option.value = type;
      this.select.appendChild(option);
    }
    this.select.setAttribute('aria-label', 'Competition type');
    this.select.onchange = () => {
      this.chosen = true;
      void this.refresh();
    };
    const table = (cls: string, labels: string[], body: HTMLElement) =>
      el('table', `cs-standings ${cls}`, null, [head(labels), body]);
    this.node = el('section', 'cs-view cs-standings-view', null, [
      el('div', 'cs-view-head', null, [
        el('h3', 'cs-standings-title', 'Standings across rounds'),
        this.select
      ]),
      this.note,
      table(
        'cs-standings-functions',
        ['Function', 'Version', 'Participant', 'Rounds', 'Mean rank', 'Wins'],
        this.functions
      ),
      this.moreFunctions,
      table(
        'cs-standings-participants',
        ['Participant', 'Rounds', 'Mean rank', 'Wins'],
        this.participants
      ),
      this.moreParticipants,
      this.chart
    ]);
    this.functions.className = 'cs-standings-fns';
    this.participants.className = 'cs-standings-ps';
  }

  get type(): CompetitionType {
    return this.select.value as CompetitionType;
  }

  /** Choose `type` unless the viewer already chose one; whether it changed (read it then). */
  suggest(type: CompetitionType): boolean {
    if (this.chosen || this.select.value === type) {
      return false;
    }
    this.select.value = type;
    return true;
  }

  /** Read the chosen type's standings and show them (the newest read wins). */
  async refresh(): Promise<void> {
    const seq = ++this.seq;
    const type = this.type;
    try {
      const standings = await this.options.load(type);
      if (seq === this.seq) {
        this.show(standings);
      }
    } catch (err) {
      if (seq === this.seq) {
        this.note.textContent =
          err instanceof Error ? err.message : String(err);
      }
    }
  }

  /** Redraw the chart (the face was shown or resized). */
  renderChart(): void {
    if (this.shown) {
      void this.drawChart(this.shown);
    }
  }

  dispose(): void {
    this.seq += 1;
    this.plotly?.purge(this.chart);
  }

  private show(standings: Standings): void {
    this.shown = standings;
    const rounds = standings.rounds.length;
    this.note.textContent = rounds
      ? `${rounds} ${standings.type} round${rounds === 1 ? '' : 's'}; mean normalised rank: 0 best, 1 last.`
      : `No ${standings.type} rounds yet.`;
    const { functions, participants } = standings;
    this.functions.replaceChildren(
      ...functions.slice(0, ROW_LIMIT).map(functionRow)
    );
    this.participants.replaceChildren(
      ...participants.slice(0, ROW_LIMIT).map(participantRow)
    );
    this.moreFunctions.textContent = moreText(
      standings.functions_total,
      'functions'
    );
    this.moreParticipants.textContent = moreText(
      standings.participants_total,
      'participants'
    );
    void this.drawChart(standings);
  }

  private async drawChart(standings: Standings): Promise<void> {
    const figure = rankFigure(standings);
    this.chart.hidden = figure === null;
    if (!this.chart.isConnected) {
      return;
    }
    try {
      this.plotly = this.plotly ?? (await this.options.plotly());
    } catch (err) {
      this.chart.dataset.error = String(err);
      return;
    }
    if (standings !== this.shown) {
      return;
    }
    if (figure === null) {
      this.plotly.purge(this.chart);
    } else {
      this.plotly.react(this.chart, figure.data, figure.layout, {
        displayModeBar: false,
        responsive: true
      });
    }
  }
}
