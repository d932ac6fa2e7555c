import { describe, expect, it } from 'vitest';

import { rankFigure, ROW_LIMIT, StandingsView } from '../src/standings';
import { Standings } from '../src/types';

const CLAIM = '<a href="https://x.test">claim</a><b>x</b>';
const never = () => new Promise<never>(() => undefined);

/** Two closed regress rounds: Bob's function (named with markup) won both. */
function standings(): Standings {
  const bob = { id: 2, name: CLAIM };
  const ranks = (first: number, second: number) => [
    { competition_id: 10, rank: first, of: 2, normalised: first - 1 },
    { competition_id: 11, rank: second, of: 2, normalised: second - 1 }
  ];
  return {
    type: 'regress',
    rounds: [
      { competition_id: 10, title: 'round 1', closes_at: null, entries: 2 },
      { competition_id: 11, title: CLAIM, closes_at: null, entries: 2 }
    ],
    functions: [
      {
        participant: bob,
        function: {
          name: CLAIM,
          digest: 'b'.repeat(64),
          version: 1,
          previous: null
        },
        rounds: 2,
        mean_normalised_rank: 0,
        wins: 2,
        ranks: ranks(1, 1)
      }
    ],
    participants: [
      {
        participant: bob,
        rounds: 2,
        mean_normalised_rank: 0,
        wins: 2,
        ranks: ranks(1, 1)
      },
      {
        participant: { id: 1, name: 'alice' },
        rounds: 2,
        mean_normalised_rank: 1,
        wins: 0,
        ranks: ranks(2, 2)
      }
    ],
    functions_total: 1,
    participants_total: 2
  };
}

describe('the standings view', () => {
  it('lists functions and participants, names as text', async () => {
    const asked: string[] = [];
    const view = new StandingsView({
      load: async type => {
        asked.push(type);
        return standings();
      },
      plotly: never
    });
    expect(view.suggest('regress')).toBe(true);
    await view.refresh();
    expect(asked).toEqual(['regress']);
    const row = view.node.querySelector(
      `tr[data-function="${'b'.repeat(64)}"]`
    )!;
    expect([...row.children].map(td => td.textContent)).toEqual([
      CLAIM,
      'v1',
      CLAIM,
      '2',
      '0.000',
      '2'
    ]);
    expect(
      view.node.querySelector('tr[data-participant="1"] td')!.textContent
    ).toBe('alice');
    expect(view.node.querySelectorAll('a, b').length).toBe(0);
  });

  it('keeps the type the viewer chose', async () => {
    const view = new StandingsView({
      load: async () => standings(),
      plotly: never
    });
    const select = view.node.querySelector('select')!;
    select.value = 'cluster';
    select.dispatchEvent(new Event('change'));
    expect(view.suggest('regress')).toBe(false);
    expect(view.type).toBe('cluster');
  });

  it('charts rank over rounds with escaped labels', () => {
    const figure = rankFigure(standings())!;
    const trace = figure.data[0] as { name: string; x: string[]; y: number[] };
    expect(trace.name).not.toContain('<');
    expect(trace.x).toEqual([
      '1. round 1',
      `2. ${CLAIM.replace(/</g, '&lt;').replace(/>/g, '&gt;')}`
    ]);
    expect(trace.y).toEqual([1, 1]);
  });
});

describe('a type with thousands of participants', () => {
  it('shows the best ROW_LIMIT rows and says how many there are', async () => {
    const many = standings();
    const one = many.participants[1];
    many.participants = Array.from({ length: 10000 }, (_, i) => ({
      ...one,
      participant: { id: i + 1, name: `p${i}` }
    }));
    many.participants_total = many.participants.length;
    const view = new StandingsView({ load: async () => many, plotly: never });
    await view.refresh();
    expect(view.node.querySelectorAll('tr[data-participant]').length).toBe(
      ROW_LIMIT
    );
    expect(view.node.textContent).toContain(
      'Showing the best 50 of 10,000 participants.'
    );
  });
});
