import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeFormula } from '../../src/reports/csv.js';
import {
  ageBucketOf,
  ageDays,
  ageLayers,
  coversOnTop,
  gradeAbc,
  newestCovering,
} from '../../src/reports/rules.js';
import {
  applyToState,
  createReplay,
  emptyState,
  shownCost,
  shownMoney,
  type ValuedMovement,
  type ValueState,
} from '../../src/reports/valuation.js';

/** Applies (delta, cost) steps to one level from nothing; returns the state and each step's value. */
function run(steps: [number, number | null][]): { state: ValueState; values: number[] } {
  let state = emptyState();
  const values: number[] = [];
  for (const [delta, cost] of steps) {
    const next = applyToState(state, delta, cost);
    state = next.state;
    values.push(next.value);
  }
  return { state, values };
}

describe('moving weighted average valuation', () => {
  it('receive 10 @ 100, 10 @ 200, 5 out: 15 units worth 2250 at 150', () => {
    const { state } = run([
      [10, 100],
      [10, 200],
      [-5, null],
    ]);
    expect(state.units).toBe(15);
    expect(state.value).toBe(2250);
    expect(state.value / state.units).toBe(150);
  });

  it('2 out with none in stock, then 20 received @ 333: 18 units at 333, the 2 settled at 333 (Odoo #41669)', () => {
    const { state, values } = run([
      [-2, null],
      [20, 333],
    ]);
    expect(state.units).toBe(18);
    expect(state.value).toBe(18 * 333);
    expect(state.value / state.units).toBe(333);
    // The receipt's value is its 20 units less the 2 owed, settled at its own cost.
    expect(values[1]).toBe(20 * 333 - 2 * 333);
  });

  it('2 @ 100 + 1 @ 101, then 3 out: exactly zero value (Odoo #46850)', () => {
    const { state, values } = run([
      [2, 100],
      [1, 101],
      [-3, null],
    ]);
    expect(state).toMatchObject({ units: 0, value: 0 });
    expect(values[2]).toBe(-301);
    expect(shownCost(301 / 3)).toBe(100.333333);
  });

  it('units below zero are valued at the last known cost until stock returns', () => {
    const { state, values } = run([
      [4, 250],
      [-6, null],
    ]);
    expect(state).toMatchObject({ units: -2, value: -500, lastCost: 250 });
    expect(values[1]).toBe(-1500);
    const settled = applyToState(state, 2, 300);
    expect(settled.state).toMatchObject({ units: 0, value: 0 });
  });

  it('a movement in without a cost takes the current average', () => {
    const { state } = run([
      [3, 100],
      [1, 130],
      [2, null],
    ]);
    expect(state.value / state.units).toBeCloseTo(107.5, 9);
  });

  it('rounds money only when shown, half away from zero', () => {
    expect(shownMoney(200.5)).toBe(201);
    expect(shownMoney(-200.5)).toBe(-201);
    expect(shownMoney(-0.2)).toBe(0);
    expect(Object.is(shownMoney(-0.2), 0)).toBe(true);
  });

  it('a transfer moves cost: the units arrive at the average they left at', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const m = (
      id: number,
      location: string,
      kind: string,
      delta: number,
      unitCost: number | null,
    ): ValuedMovement => ({
      id,
      sku: 'S',
      location,
      kind,
      delta,
      unitCost,
      jobId: 'j',
      createdAt: at,
    });
    const replay = createReplay();
    replay.apply(m(1, 'a', 'receipt', 10, 100));
    replay.apply(m(2, 'a', 'receipt', 10, 200));
    replay.apply(m(3, 'b', 'receipt', 10, 400));
    replay.apply(m(4, 'a', 'transfer_out', -5, null));
    replay.apply(m(5, 'b', 'transfer_in', 5, null));
    expect(replay.state('a', 'a')).toEqual(emptyState());
    expect(replay.state('S', 'a')).toMatchObject({ units: 15, value: 2250 });
    expect(replay.state('S', 'b')).toMatchObject({ units: 15, value: 4000 + 750 });
  });

  const step = fc.tuple(
    fc.integer({ min: -50, max: 50 }).filter((d) => d !== 0),
    fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: null }),
  );

  it('property: the movements’ values add up to the value; zero units is zero value; never NaN', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const { state, values } = run(steps);
        const sum = values.reduce((a, b) => a + b, 0);
        expect(Math.abs(sum - state.value)).toBeLessThan(1e-6 * Math.max(1, Math.abs(state.value)));
        expect(Number.isFinite(state.value)).toBe(true);
        if (state.units === 0) expect(state.value).toBe(0);
        // Negative or positive, every unit is at one cost once stock has been received at or after.
        if (state.units < 0 && state.lastCost !== null)
          expect(state.value).toBeCloseTo(state.units * state.lastCost, 6);
      }),
    );
  });

  it('property: a replay over many levels decides each level as one by one', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), step), { maxLength: 80 }), (moves) => {
        const replay = createReplay();
        const at = new Date(0);
        moves.forEach(([location, [delta, cost]], i) => {
          replay.apply({
            id: i,
            sku: 'S',
            location,
            kind: 'adjustment',
            delta,
            unitCost: cost,
            jobId: null,
            createdAt: at,
          });
        });
        for (const location of ['a', 'b', 'c']) {
          const alone = run(moves.filter(([l]) => l === location).map(([, s]) => s)).state;
          expect(replay.state('S', location)).toEqual(alone);
        }
      }),
    );
  });
});

describe('ABC grades', () => {
  it('grades by the share of those before: 0.80 and 0.95 cut-offs, U for no sales', () => {
    const graded = gradeAbc([
      { key: 'd', amount: 5 },
      { key: 'a', amount: 50 },
      { key: 'b', amount: 30 },
      { key: 'c', amount: 15 },
      { key: 'z', amount: 0 },
    ]);
    expect(graded.map((g) => [g.key, g.grade])).toEqual([
      ['a', 'A'],
      ['b', 'A'],
      ['c', 'B'],
      ['d', 'C'],
      ['z', 'U'],
    ]);
    expect(graded[1]!.cumulativeShare).toBeCloseTo(0.8, 12);
  });

  it('the largest item is always A, even alone over 0.80; nothing sold is all U', () => {
    expect(
      gradeAbc([
        { key: 'x', amount: 90 },
        { key: 'y', amount: 10 },
      ]).map((g) => g.grade),
    ).toEqual(['A', 'B']);
    expect(gradeAbc([{ key: 'x', amount: 0 }]).map((g) => g.grade)).toEqual(['U']);
  });
});

describe('FIFO ageing', () => {
  it('keeps the newest inflows that cover on hand, the oldest kept cut to fit; one layer per day', () => {
    const inflows = [
      { day: '2026-10-01', units: 10 },
      { day: '2026-12-01', units: 20 },
      { day: '2026-10-01', units: 5 },
      { day: '2026-11-15', units: 4 },
    ];
    expect(newestCovering(inflows, 30)).toEqual([
      { day: '2026-12-01', units: 20 },
      { day: '2026-11-15', units: 4 },
      { day: '2026-10-01', units: 6 },
    ]);
    expect(newestCovering(inflows, 100)).toEqual([
      { day: '2026-12-01', units: 20 },
      { day: '2026-11-15', units: 4 },
      { day: '2026-10-01', units: 15 },
    ]);
    // Nothing left: one layer of 0 units marks the newest day consumed.
    expect(newestCovering(inflows, 0)).toEqual([{ day: '2026-12-01', units: 0 }]);
    expect(newestCovering(inflows, -3)).toEqual([{ day: '2026-12-01', units: 0 }]);
    expect(newestCovering([], 5)).toEqual([]);
  });

  it('ages layers into buckets: 30 days is 0-30, 31 is 31-60, 91 is 90+', () => {
    expect([0, 30, 31, 60, 61, 90, 91].map(ageBucketOf)).toEqual([
      '0-30',
      '0-30',
      '31-60',
      '31-60',
      '61-90',
      '61-90',
      '90+',
    ]);
    expect(ageDays('2026-11-07', '2026-12-07')).toBe(30);
    expect(
      ageLayers(
        [
          { day: '2026-12-07', units: 1 },
          { day: '2026-11-07', units: 2 },
          { day: '2026-11-06', units: 4 },
          { day: '2026-09-08', units: 8 },
          { day: '2026-09-07', units: 16 },
        ],
        '2026-12-07',
      ),
    ).toEqual({ '0-30': 3, '31-60': 4, '61-90': 8, '90+': 16 });
  });

  it('covers on top of layers unless an inflow is older than their oldest day (consumed units may be newer)', () => {
    expect(coversOnTop([], [{ day: '2026-01-01', units: 1 }])).toBe(true);
    const layers = [
      { day: '2026-03-01', units: 2 },
      { day: '2026-02-01', units: 1 },
    ];
    expect(coversOnTop(layers, [{ day: '2026-02-01', units: 1 }])).toBe(true);
    expect(coversOnTop(layers, [{ day: '2026-01-31', units: 1 }])).toBe(false);
    expect(coversOnTop([{ day: '2026-01-02', units: 0 }], [{ day: '2026-01-01', units: 1 }])).toBe(false);
  });

  it('property: covering step by step (inflows in any order, outflows, stock below zero) equals covering once from all inflows', () => {
    const day = fc
      .integer({ min: 0, max: 200 })
      .map((d) => new Date(Date.UTC(2026, 0, 1 + d)).toISOString().slice(0, 10));
    const step = fc.record({
      inflows: fc.array(fc.record({ day, units: fc.integer({ min: 1, max: 50 }) })),
      out: fc.integer({ min: 0, max: 80 }),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 20 }), (steps) => {
        let layers: { day: string; units: number }[] = [];
        let onHand = 0;
        const all: { day: string; units: number }[] = [];
        for (const s of steps) {
          onHand += s.inflows.reduce((n, i) => n + i.units, 0) - s.out;
          all.push(...s.inflows);
          layers = coversOnTop(layers, s.inflows)
            ? newestCovering([...layers, ...s.inflows], onHand)
            : newestCovering(all, onHand);
          expect(layers).toEqual(newestCovering(all, onHand));
        }
      }),
    );
  });
});

describe('CSV formula escaping', () => {
  it('escapes text that a spreadsheet would run, and nothing else', () => {
    expect(escapeFormula('=HYPERLINK("x")')).toBe(`'=HYPERLINK("x")`);
    expect(escapeFormula('-3')).toBe(`'-3`);
    expect(escapeFormula('@SUM(A1)')).toBe(`'@SUM(A1)`);
    expect(escapeFormula('TSHIRT')).toBe('TSHIRT');
  });
});
