import { describe, expect, it } from 'vitest';
import { allocate, type Candidate } from '../../src/domain/allocation.js';

const stock = (
  rows: [sku: string, location: string, available: number][],
  priorities: Record<string, number>,
) =>
  rows.map(
    ([sku, location, available]): Candidate => ({
      sku,
      location,
      available,
      priority: priorities[location] ?? 100,
      active: true,
    }),
  );

describe('allocate', () => {
  const priorities = { a: 1, b: 2, c: 3, d: 4 };

  it('serves every line from the best-priority location that has them all', () => {
    const outcome = allocate(
      [
        { index: 0, sku: 'X', quantity: 2 },
        { index: 1, sku: 'Y', quantity: 1 },
      ],
      stock(
        [
          ['X', 'a', 5],
          ['Y', 'a', 0],
          ['X', 'b', 2],
          ['Y', 'b', 1],
          ['X', 'c', 9],
          ['Y', 'c', 9],
        ],
        priorities,
      ),
    );
    expect(outcome).toEqual({
      ok: true,
      allocations: [
        { index: 0, sku: 'X', location: 'b', quantity: 2, rule: 'single_location' },
        { index: 1, sku: 'Y', location: 'b', quantity: 1, rule: 'single_location' },
      ],
    });
  });

  it('finds the smallest set of locations, not the greedy one', () => {
    // Greedy by priority would take a (X), then b (Y), then c (Z): three. {b, c} serves all in two.
    const outcome = allocate(
      [
        { index: 0, sku: 'X', quantity: 1 },
        { index: 1, sku: 'Y', quantity: 1 },
        { index: 2, sku: 'Z', quantity: 1 },
      ],
      stock(
        [
          ['X', 'a', 1],
          ['Y', 'b', 1],
          ['X', 'c', 1],
          ['Z', 'c', 1],
          ['Y', 'd', 1],
        ],
        priorities,
      ),
    );
    expect(outcome.ok && outcome.allocations.map((a) => [a.sku, a.location, a.rule])).toEqual([
      ['X', 'c', 'fewest_locations'],
      ['Y', 'b', 'fewest_locations'],
      ['Z', 'c', 'fewest_locations'],
    ]);
  });

  it('sums lines of the same sku before checking (a bundle cannot pass twice on one unit)', () => {
    const outcome = allocate(
      [
        { index: 0, sku: 'X', quantity: 1 },
        { index: 1, sku: 'X', quantity: 1 },
      ],
      stock([['X', 'a', 1]], priorities),
    );
    expect(outcome).toEqual({
      ok: false,
      shortages: [
        { index: 0, sku: 'X', location: null, requested: 1, requestedTotal: 2, available: 1 },
        { index: 1, sku: 'X', location: null, requested: 1, requestedTotal: 2, available: 1 },
      ],
    });
  });

  it('splits a sku no single location can serve, and spreads its lines over the parts', () => {
    const outcome = allocate(
      [
        { index: 0, sku: 'X', quantity: 2 },
        { index: 1, sku: 'X', quantity: 3 },
      ],
      stock(
        [
          ['X', 'a', 3],
          ['X', 'b', 1],
          ['X', 'c', 4],
        ],
        priorities,
      ),
    );
    expect(outcome.ok && outcome.allocations).toEqual([
      { index: 0, sku: 'X', location: 'a', quantity: 2, rule: 'split' },
      { index: 1, sku: 'X', location: 'a', quantity: 1, rule: 'split' },
      { index: 1, sku: 'X', location: 'b', quantity: 1, rule: 'split' },
      { index: 1, sku: 'X', location: 'c', quantity: 1, rule: 'split' },
    ]);
  });

  it('takes explicit lines first and skips inactive locations for the others', () => {
    const candidates = stock(
      [
        ['X', 'a', 3],
        ['X', 'b', 5],
      ],
      priorities,
    );
    candidates[1]!.active = false;
    const outcome = allocate(
      [
        { index: 0, sku: 'X', quantity: 2, location: 'a' },
        { index: 1, sku: 'X', quantity: 2 },
        { index: 2, sku: 'X', quantity: 4, location: 'b' },
      ],
      candidates,
    );
    expect(outcome).toEqual({
      ok: false,
      shortages: [{ index: 1, sku: 'X', location: null, requested: 2, requestedTotal: 2, available: 1 }],
    });
  });

  it('breaks priority ties by location code', () => {
    const outcome = allocate(
      [{ index: 0, sku: 'X', quantity: 1 }],
      stock(
        [
          ['X', 'z', 1],
          ['X', 'm', 1],
        ],
        {},
      ),
    );
    expect(outcome.ok && outcome.allocations[0]!.location).toBe('m');
  });
});
