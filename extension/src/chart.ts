/**
 * A small SVG bar chart of a leaderboard's best scores (top entries).
 */
import { formatScore, svg } from './dom';
import { entryName, ILeaderboard, isEntryOf } from './types';

const ROW = 18;
const VALUE = 58;

/** `width` is the pixel width to draw at, so that text keeps its CSS size. */
export function leaderboardChart(
  board: ILeaderboard,
  highlightId: number | null,
  width = 300,
  limit = 10
): SVGSVGElement {
  const WIDTH = Math.max(200, Math.round(width));
  const LABEL = Math.round(WIDTH * 0.34);
  const entries = board.entries
    .filter(e => e.score !== null && Number.isFinite(e.score))
    .slice(0, limit);
  const height = Math.max(1, entries.length) * ROW + 4;
  const root = svg('svg', {
    class: 'cs-chart',
    viewBox: `0 0 ${WIDTH} ${height}`,
    width: WIDTH,
    height,
    role: 'img'
  });
  const direction = board.higher_is_better
    ? 'higher is better'
    : 'lower is better';
  root.appendChild(svg('title', {}, `Best ${board.metric} (${direction})`));
  if (entries.length === 0) {
    root.appendChild(
      svg('text', { x: 4, y: 14, class: 'cs-chart-empty' }, 'No scores yet')
    );
    return root;
  }
  const scores = entries.map(e => e.score as number);
  const lo = Math.min(0, ...scores);
  const hi = Math.max(0, ...scores);
  const span = hi - lo || 1;
  const barArea = WIDTH - LABEL - VALUE;
  const zeroX = LABEL + ((0 - lo) / span) * barArea;
  const maxChars = Math.max(8, Math.floor(LABEL / 6.5));
  entries.forEach((entry, i) => {
    const score = entry.score as number;
    const y = 2 + i * ROW;
    const x1 = LABEL + ((Math.min(0, score) - lo) / span) * barArea;
    const w = Math.max(1, (Math.abs(score) / span) * barArea);
    const mine = highlightId !== null && isEntryOf(entry, highlightId);
    const label = `${entry.rank}. ${entryName(entry)}`;
    const name = svg(
      'text',
      { x: LABEL - 4, y: y + ROW - 6, class: 'cs-chart-label' },
      label.length > maxChars ? label.slice(0, maxChars - 1) + '…' : label
    );
    name.appendChild(svg('title', {}, label));
    root.appendChild(name);
    root.appendChild(
      svg('rect', {
        x: x1,
        y: y + 2,
        width: w,
        height: ROW - 5,
        rx: 2,
        class: mine ? 'cs-chart-bar cs-mine' : 'cs-chart-bar'
      })
    );
    root.appendChild(
      svg(
        'text',
        { x: WIDTH - VALUE + 4, y: y + ROW - 6, class: 'cs-chart-value' },
        formatScore(score)
      )
    );
  });
  root.appendChild(
    svg('line', {
      x1: zeroX,
      x2: zeroX,
      y1: 0,
      y2: height,
      class: 'cs-chart-axis'
    })
  );
  return root;
}
