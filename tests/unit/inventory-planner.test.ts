import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LockedLevel } from '../../src/domain/inventory/lock.js';
import {
  type AdjustLine,
  assertKnown,
  type Decision,
  decide,
  planAdjust,
  planReservation,
  type Request,
} from '../../src/domain/inventory/planner.js';
import { levelKey } from '../../src/domain/levels.js';
import { DomainError } from '../../src/errors/domain-error.js';

const level = (sku: string, location: string, onHand: number, reserved = 0, safety = 0, active = true) => ({
  sku,
  location,
  on_hand: onHand,
  reserved,
  safety_stock: safety,
  priority: Number(location.slice(1)),
  active,
});
const levelsOf = (rows: LockedLevel[]) => new Map(rows.map((r) => [levelKey(r), { ...r }]));
const line = (sku: string, location: string, delta: number, extra: Partial<AdjustLine> = {}): AdjustLine => ({
  sku,
  location,
  delta,
  reason: delta < 0 ? 'lost' : 'found',
  ...extra,
});
const failure = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    if (error instanceof DomainError) return { code: error.code, details: error.details };
    throw error;
  }
  throw new Error('expected a DomainError');
};

describe('planAdjust', () => {
  it('applies lines in order, so two lines on one level see each other, and leaves the levels as they were', () => {
    const levels = levelsOf([level('A', 'L1', 5, 2)]);
    const { movements, after } = planAdjust(levels, [
      line('A', 'L1', -3),
      line('A', 'L1', 4, { reason: 'received' }),
    ]);
    expect(movements.map((m) => [m.kind, m.delta, m.reason])).toEqual([
      ['adjustment', -3, 'lost'],
      ['receipt', 4, 'received'],
    ]);
    expect(after.get(levelKey({ sku: 'A', location: 'L1' }))).toMatchObject({ on_hand: 6, reserved: 2 });
    expect(levels.get(levelKey({ sku: 'A', location: 'L1' }))!.on_hand).toBe(5);
  });

  it('reports every line that would go below the reserved quantity, not just the first', () => {
    const levels = levelsOf([level('A', 'L1', 5, 2), level('B', 'L1', 1)]);
    expect(
      failure(() => planAdjust(levels, [line('A', 'L1', -4), line('B', 'L1', 1), line('B', 'L1', -3)])),
    ).toEqual({
      code: 'insufficient_stock',
      details: {
        lines: [
          { index: 0, sku: 'A', location: 'L1', delta: -4, onHand: 5, reserved: 2, available: 3 },
          { index: 2, sku: 'B', location: 'L1', delta: -3, onHand: 2, reserved: 0, available: 2 },
        ],
      },
    });
  });

  it('fails stale_quantity when expectedOnHand differs, before any shortage', () => {
    const levels = levelsOf([level('A', 'L1', 5)]);
    expect(
      failure(() => planAdjust(levels, [line('A', 'L1', -9), line('A', 'L1', 1, { expectedOnHand: 4 })])),
    ).toEqual({
      code: 'stale_quantity',
      details: { lines: [{ index: 1, sku: 'A', location: 'L1', expectedOnHand: 4, onHand: 5 }] },
    });
  });
});

describe('planReservation', () => {
  it('fails insufficient_stock listing every short line', () => {
    expect(
      failure(() =>
        planReservation(
          [{ index: 0, sku: 'A', quantity: 3 }],
          [{ sku: 'A', location: 'L1', available: 2, priority: 1, active: true }],
        ),
      ),
    ).toMatchObject({
      code: 'insufficient_stock',
      details: { lines: [{ index: 0, sku: 'A', requested: 3 }] },
    });
  });
});

describe('assertKnown', () => {
  it('names every line with an unknown sku or location', () => {
    expect(
      failure(() =>
        assertKnown(
          [
            { sku: 'A', location: 'L1' },
            { sku: 'X', location: 'L9' },
          ],
          new Set(['X']),
          new Set(['L9']),
        ),
      ),
    ).toEqual({
      code: 'not_found',
      details: { lines: [{ index: 1, sku: 'X', location: 'L9', missing: ['sku', 'location'] }] },
    });
    expect(() => assertKnown([{ sku: 'A', location: 'L1' }], new Set(), new Set())).not.toThrow();
  });
});

describe('decide', () => {
  const ids = () => 'r-1';

  it('leaves to the domain function a request naming a level not locked, or a sku without an active level', () => {
    const levels = levelsOf([level('A', 'L1', 5), level('B', 'L2', 5, 0, 0, false)]);
    expect(decide(levels, { kind: 'adjust', lines: [line('A', 'L2', 1)] }, ids)).toBeUndefined();
    const reserve = (lines: { sku: string; quantity: number; location?: string }[]): Request => ({
      kind: 'reserve',
      reserve: { reference: 'r', ttlSeconds: 60, lines },
    });
    expect(decide(levels, reserve([{ sku: 'A', quantity: 1, location: 'L2' }]), ids)).toBeUndefined();
    expect(decide(levels, reserve([{ sku: 'B', quantity: 1 }]), ids)).toBeUndefined();
    // A named level at an inactive location is a candidate for the line naming it.
    expect(decide(levels, reserve([{ sku: 'B', quantity: 1, location: 'L2' }]), ids)).toMatchObject({
      kind: 'reserve',
      reservation: { id: 'r-1', allocations: [{ sku: 'B', location: 'L2', quantity: 1, rule: 'explicit' }] },
    });
    expect(levels.get(levelKey({ sku: 'B', location: 'L2' }))!.reserved).toBe(1);
  });

  it('keeps the figures as they were when a request breaks a rule', () => {
    const levels = levelsOf([level('A', 'L1', 5, 1)]);
    expect(() =>
      decide(levels, { kind: 'adjust', lines: [line('A', 'L1', 2), line('A', 'L1', -9)] }, ids),
    ).toThrow(DomainError);
    expect(levels.get(levelKey({ sku: 'A', location: 'L1' }))).toMatchObject({ on_hand: 5, reserved: 1 });
  });
});

// A batch decides exactly as the same jobs one by one: one lock over every level the batch
// touches with the figures kept in memory, against each job locking its own levels anew after
// the previous job's movements were applied (as the ledger trigger applies them).

const skus = ['A', 'B', 'C'];
const locations = ['L1', 'L2', 'L3'];

/** Levels of every sku × location, most of them existing, at locations active or not. */
const world = fc
  .record({
    active: fc.array(fc.boolean(), { minLength: locations.length, maxLength: locations.length }),
    cells: fc.array(
      fc.record({
        exists: fc.integer({ min: 0, max: 5 }).map((n) => n > 0),
        onHand: fc.integer({ min: 0, max: 12 }),
        reserved: fc.integer({ min: 0, max: 12 }),
        safety: fc.integer({ min: 0, max: 3 }),
      }),
      { minLength: skus.length * locations.length, maxLength: skus.length * locations.length },
    ),
  })
  .map(({ active, cells }) =>
    cells.flatMap((cell, i) => {
      if (!cell.exists) return [];
      const at = i % locations.length;
      const sku = skus[Math.floor(i / locations.length)]!;
      return [
        level(
          sku,
          locations[at]!,
          cell.onHand,
          Math.min(cell.reserved, cell.onHand),
          cell.safety,
          active[at]!,
        ),
      ];
    }),
  );

const sku = fc.constantFrom(...skus);
const location = fc.constantFrom(...locations);
const request: fc.Arbitrary<Request> = fc.oneof(
  fc.record({
    kind: fc.constant('adjust' as const),
    lines: fc.array(
      fc.record({
        sku,
        location,
        delta: fc.integer({ min: -8, max: 8 }),
        reason: fc.constantFrom(
          'received',
          'returned',
          'damaged',
          'lost',
          'found',
          'correction',
          'other' as const,
        ),
        expectedOnHand: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
      }),
      { minLength: 1, maxLength: 3 },
    ),
  }),
  fc.record({
    kind: fc.constant('reserve' as const),
    reserve: fc.record({
      reference: fc.constant('ref'),
      ttlSeconds: fc.constant(60),
      lines: fc.array(
        fc.record({
          sku,
          quantity: fc.integer({ min: 1, max: 8 }),
          location: fc.option(location, { nil: undefined }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  }),
);

/** What one job locks: its levels, and for reservation lines without a location every active level of the sku. */
function locked(table: Map<string, LockedLevel>, r: Request): Map<string, LockedLevel> {
  const keys =
    r.kind === 'adjust'
      ? r.lines.map(levelKey)
      : r.reserve.lines.flatMap((l) => (l.location ? [levelKey({ sku: l.sku, location: l.location })] : []));
  const open = new Set(
    r.kind === 'reserve' ? r.reserve.lines.filter((l) => !l.location).map((l) => l.sku) : [],
  );
  const out = new Map<string, LockedLevel>();
  for (const [key, row] of table)
    if (keys.includes(key) || (open.has(row.sku) && row.active)) out.set(key, { ...row });
  return out;
}

/** The ledger trigger: each movement applied to its level. */
function applyMovements(table: Map<string, LockedLevel>, decision: Decision): void {
  for (const m of decision.movements) {
    const row = table.get(levelKey(m))!;
    if (m.kind === 'reserve') row.reserved += m.delta;
    else row.on_hand += m.delta;
  }
}

type Outcome = { decision: Decision | undefined } | { code: string; details: unknown };

function attempt(levels: Map<string, LockedLevel>, r: Request, n: number): Outcome {
  try {
    return { decision: decide(levels, r, () => `r-${n}`) };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { code: error.code, details: error.details };
  }
}

describe('a batch decides as the same jobs one by one', () => {
  it('same outcomes, same movements and allocations, same figures after', () => {
    fc.assert(
      fc.property(world, fc.array(request, { minLength: 1, maxLength: 12 }), (rows, requests) => {
        const table = levelsOf(rows);
        const oneByOne = requests.map((r, n) => {
          const outcome = attempt(locked(table, r), r, n);
          if ('decision' in outcome && outcome.decision) applyMovements(table, outcome.decision);
          return outcome;
        });

        const batch = new Map<string, LockedLevel>();
        for (const r of requests) for (const [key, row] of locked(levelsOf(rows), r)) batch.set(key, row);
        const together = requests.map((r, n) => attempt(batch, r, n));

        expect(together).toEqual(oneByOne);
        for (const [key, row] of batch) expect(row).toEqual(table.get(key));
      }),
      { numRuns: 500 },
    );
  });
});
