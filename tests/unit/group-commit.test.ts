import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { take } from '../../src/workers/group-commit.js';

const job = (id: number, keys: string[], lines = 1) => ({ id, keys, lines });
const ids = (jobs: { id: number }[]) => jobs.map((j) => j.id);

describe('take (the executor picks the next batch)', () => {
  const limits = { maxJobs: 3, maxLines: 10 };

  it('takes jobs in arrival order up to maxJobs; the rest wait in order', () => {
    const { taken, left } = take([job(1, ['A']), job(2, ['B']), job(3, ['C']), job(4, ['D'])], [], limits);
    expect(ids(taken)).toEqual([1, 2, 3]);
    expect(ids(left)).toEqual([4]);
  });

  it('leaves a job on a key a running batch holds, and every later job on that key', () => {
    const { taken, left } = take(
      [job(1, ['A']), job(2, ['B']), job(3, ['A', 'C']), job(4, ['C'])],
      ['A'],
      limits,
    );
    expect(ids(taken)).toEqual([2]);
    expect(ids(left)).toEqual([1, 3, 4]);
  });

  it('stops at maxLines, but a job larger than the bound still goes alone', () => {
    expect(ids(take([job(1, ['A'], 6), job(2, ['B'], 5), job(3, ['C'], 4)], [], limits).taken)).toEqual([
      1, 3,
    ]);
    expect(ids(take([job(1, ['A'], 50), job(2, ['B'])], [], limits).taken)).toEqual([1]);
  });

  it('keeps jobs sharing a key in arrival order when the first cannot go (the batch is full)', () => {
    const { taken, left } = take([job(1, ['A']), job(2, ['B']), job(3, ['C']), job(4, ['A'])], [], {
      maxJobs: 2,
      maxLines: 10,
    });
    expect(ids(taken)).toEqual([1, 2]);
    expect(ids(left)).toEqual([3, 4]);
  });

  it('over any queue: a partition in order, within the bounds, never ahead of an earlier job on its key', () => {
    const keys = fc.uniqueArray(fc.constantFrom('A', 'B', 'C', 'D', 'E'), { minLength: 1, maxLength: 3 });
    fc.assert(
      fc.property(
        fc.array(fc.record({ keys, lines: fc.integer({ min: 1, max: 6 }) }), { maxLength: 20 }),
        fc.uniqueArray(fc.constantFrom<string>('A', 'B', 'C', 'D', 'E'), { maxLength: 2 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 12 }),
        (specs, busy, maxJobs, maxLines) => {
          const waiting = specs.map((s, id) => job(id, s.keys, s.lines));
          const { taken, left } = take(waiting, busy, { maxJobs, maxLines });
          const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;
          expect([...taken, ...left].sort(byId)).toEqual(waiting);
          expect(ids(taken)).toEqual(ids([...taken].sort(byId)));
          expect(ids(left)).toEqual(ids([...left].sort(byId)));
          expect(taken.length).toBeLessThanOrEqual(maxJobs);
          if (taken.length > 1) expect(taken.reduce((n, j) => n + j.lines, 0)).toBeLessThanOrEqual(maxLines);
          for (const t of taken) {
            expect(t.keys.some((k) => busy.includes(k))).toBe(false);
            // No job left behind shares a key with a later job that was taken.
            for (const l of left) if (l.id < t.id) expect(l.keys.some((k) => t.keys.includes(k))).toBe(false);
          }
          // Progress: with nothing running, the first waiting job always goes.
          if (busy.length === 0 && waiting.length > 0) expect(taken[0]).toBe(waiting[0]);
        },
      ),
      { numRuns: 500 },
    );
  });
});
