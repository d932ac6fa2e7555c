import { describe, expect, it } from 'vitest';

import { barFigure, lineFigure, plotlyText } from '../src/charts';
import { findByName, SearchIndex } from '../src/search';
import { BoardView, IBoardState } from '../src/view';
import { boardOfSnapshot } from '../src/board';
import { entry, snapshot } from './fakes';

const CLAIM = '<a href="https://x.test">claim</a><b>x</b>';
const never = () => new Promise<never>(() => undefined);

function state(overrides: Partial<IBoardState> = {}): IBoardState {
  return {
    board: boardOfSnapshot(
      snapshot(
        1,
        [entry(1, 1, 0.1, CLAIM), entry(2, null, null, 'bob')],
        100,
        10000
      )
    ),
    you: null,
    around: [],
    history: [],
    me: null,
    status: '● live',
    ...overrides
  };
}

describe('the board view', () => {
  it('shows names as text, never markup', () => {
    const view = new BoardView(never);
    view.update(state());
    const row = view.node.querySelector('tr[data-entry="1"]')!;
    expect(row.querySelector('td.cs-name')!.textContent).toBe(CLAIM);
    expect(view.node.querySelectorAll('a, b').length).toBe(0);
  });

  it('shows "—" for an entry with no rank, never "null"', () => {
    const view = new BoardView(never);
    view.update(state());
    expect(
      view.node.querySelector('tr[data-entry="2"] td.cs-rank')!.textContent
    ).toBe('—');
    expect(view.node.textContent).not.toContain('null');
  });

  it("shows the viewer's place and neighbourhood below the top", () => {
    const view = new BoardView(never);
    view.update(
      state({
        you: {
          version: 3,
          participant_id: 7,
          rank: 4213,
          score: 0.9,
          total: 10000
        },
        around: [entry(7, 4213, 0.9, 'me')],
        me: 7
      })
    );
    expect(view.node.querySelector('.cs-you')!.textContent).toBe(
      '#4,213 of 10,000'
    );
    expect(
      view.node.querySelector('tbody.cs-around tr.cs-mine[data-entry="7"]')
    ).not.toBeNull();
  });

  it('searches the whole board by name', async () => {
    const all = Array.from({ length: 10000 }, (_, i) =>
      entry(i + 1, i + 1, i, `name ${i + 1}`)
    );
    const index = new SearchIndex(async () => all);
    const view = new BoardView(never, index);
    view.update(state());
    const input = view.node.querySelector<HTMLInputElement>('input.cs-search')!;
    await index.ensure();
    input.value = 'name 9999';
    input.dispatchEvent(new Event('input'));
    const rows = view.node.querySelectorAll('tbody.cs-results tr[data-entry]');
    expect(Array.from(rows).map(r => r.getAttribute('data-entry'))).toEqual([
      '9999'
    ]);
    expect(
      (view.node.querySelector('tbody.cs-top') as HTMLElement).hidden
    ).toBe(true);
  });

  it('finds case-insensitively and counts beyond what it shows', () => {
    const found = findByName(
      [
        entry(1, 1, 0, 'Alice'),
        entry(2, 2, 0, 'alicia'),
        entry(3, 3, 0, 'bob')
      ],
      'ALI',
      1
    );
    expect(found.count).toBe(2);
    expect(found.entries.map(e => e.name)).toEqual(['Alice']);
  });
});

describe('charts', () => {
  it('escapes names and titles for Plotly', () => {
    expect(plotlyText(CLAIM)).toBe(
      '&lt;a href="https://x.test"&gt;claim&lt;/a&gt;&lt;b&gt;x&lt;/b&gt;'
    );
    expect(plotlyText('a & b')).toBe('a &amp; b');
    const board = state().board!;
    const bar = barFigure(board, null)!;
    expect((bar.data[0] as any).y).toEqual(['1. ' + plotlyText(CLAIM)]);
    const line = lineFigure(board, [
      { at: '2026-12-01T10:00:00Z', participant_id: 1, name: CLAIM, score: 0.1 }
    ])!;
    expect((line.data[0] as any).name).toBe(plotlyText(CLAIM));
  });
});
