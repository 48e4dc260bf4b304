import { describe, expect, it } from 'vitest';
import { purchaseOrderTransitions } from '../../src/domain/purchase-orders.js';
import {
  autoReorderPoint,
  demandStats,
  explainQuantity,
  normalQuantile,
  orderQuantity,
} from '../../src/domain/reorder-point.js';
import { supplierRetryDelayMs } from '../../src/queues/backoff.js';
import { reorderRulePayload } from '../../src/schemas/reorder.js';

describe('normalQuantile (AS 241)', () => {
  // Reference values: R 4.x qnorm(p), an independent implementation.
  const table: [number, number][] = [
    [0.5, 0],
    [0.8, 0.8416212335729143],
    [0.9, 1.2815515655446004],
    [0.95, 1.6448536269514722],
    [0.975, 1.959963984540054],
    [0.99, 2.3263478740408408],
    [0.999, 3.090232306167813],
    [0.9999, 3.719016485455709],
    [0.01, -2.3263478740408408],
    [1e-10, -6.361340902404056],
  ];
  it.each(table)('qnorm(%s) = %s', (p, z) => {
    expect(normalQuantile(p)).toBeCloseTo(z, 12);
  });
  it('refuses p outside (0, 1)', () => {
    expect(() => normalQuantile(0)).toThrow(RangeError);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });
});

describe('auto reorder point', () => {
  it('uses the sample standard deviation over every day of the window, zero days included', () => {
    expect(demandStats([2, 4, 4, 4, 5, 5, 7, 9])).toEqual({
      days: 8,
      total: 40,
      mean: 5,
      stdDev: Math.sqrt(32 / 7),
    });
    expect(demandStats([3])).toEqual({ days: 1, total: 3, mean: 3, stdDev: 0 });
    expect(demandStats([])).toEqual({ days: 0, total: 0, mean: 0, stdDev: 0 });
  });

  it('is mean × L + z × σ × √L, rounded up to a unit', () => {
    // 7 days: 3,5,4,6,2,0,8 → total 28, mean 4, squares 1+1+0+4+4+16+16 = 42, σ = √(42/6) = √7.
    const point = autoReorderPoint({ daily: [3, 5, 4, 6, 2, 0, 8], leadTimeDays: 4, serviceLevel: 0.95 });
    const exact = 4 * 4 + 1.6448536269514722 * Math.sqrt(7) * 2; // 16 + 8.7035... = 24.7035...
    expect(point.exact).toBeCloseTo(exact, 10);
    expect(point.point).toBe(25);
    expect(point.leadTimeDemand).toBe(16);
  });

  it('does not round an exact whole number up (no demand spread)', () => {
    expect(autoReorderPoint({ daily: [5, 5, 5], leadTimeDays: 3, serviceLevel: 0.99 }).point).toBe(15);
    expect(autoReorderPoint({ daily: [0, 0], leadTimeDays: 3, serviceLevel: 0.99 }).point).toBe(0);
  });
});

describe('order quantity', () => {
  const base = { reorderPoint: 10, available: 8, incoming: 0, minOrderQuantity: 1, orderMultiple: 1 };
  it('max level − position, then the minimum, then the multiple', () => {
    const terms = orderQuantity({
      ...base,
      reorderQuantity: null,
      maxLevel: 50,
      minOrderQuantity: 10,
      orderMultiple: 5,
    });
    expect(terms).toMatchObject({ basis: 'max_level', rawQuantity: 42, quantity: 45 });
    expect(explainQuantity(terms)).toBe(
      'available 8 + incoming 0 = 8 ≤ reorder point 10; max level 50 − (available 8 + incoming 0) = 42; ' +
        'at least the minimum order 10 → 42; rounded up to a multiple of 5 → 45',
    );
  });
  it('a fixed reorder quantity is raised to the minimum order and rounded up', () => {
    expect(
      orderQuantity({ ...base, reorderQuantity: 7, maxLevel: null, minOrderQuantity: 12, orderMultiple: 5 }),
    ).toMatchObject({
      basis: 'reorder_quantity',
      rawQuantity: 7,
      quantity: 15,
    });
  });
  it('orders nothing when the position already reaches the max level', () => {
    expect(
      orderQuantity({
        ...base,
        available: 30,
        incoming: 25,
        reorderQuantity: null,
        maxLevel: 50,
        minOrderQuantity: 10,
      }).quantity,
    ).toBe(0);
  });
});

describe('supplier retry backoff', () => {
  it('doubles up to the maximum, with equal jitter', () => {
    const settings = { baseMs: 1000, maxMs: 5000 };
    expect(supplierRetryDelayMs(1, settings, () => 0)).toBe(500);
    expect(supplierRetryDelayMs(1, settings, () => 1)).toBe(1000);
    expect(supplierRetryDelayMs(3, settings, () => 1)).toBe(4000);
    expect(supplierRetryDelayMs(4, settings, () => 1)).toBe(5000);
    expect(supplierRetryDelayMs(10, settings, () => 0)).toBe(2500);
  });
});

describe('reorder rule payload', () => {
  const issues = (body: unknown) =>
    reorderRulePayload.safeParse(body).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
  const rule = { sku: 'S', location: 'default', supplier: 'acme' };
  it('accepts a fixed point with a quantity, and auto with a service level', () => {
    expect(issues({ ...rule, reorderPoint: 10, reorderQuantity: 5 })).toEqual([]);
    expect(issues({ ...rule, reorderPoint: 'auto', serviceLevel: 0.95, maxLevel: 50 })).toEqual([]);
  });
  it('lists every inconsistency', () => {
    expect(issues({ ...rule, reorderPoint: 'auto' })).toEqual([
      'reorderQuantity: give exactly one of reorderQuantity and maxLevel',
      'serviceLevel: is required with reorderPoint "auto"',
    ]);
    expect(
      issues({
        ...rule,
        reorderPoint: 10,
        serviceLevel: 0.9,
        windowDays: 7,
        maxLevel: 10,
        reorderQuantity: 3,
      }),
    ).toEqual([
      'reorderQuantity: give exactly one of reorderQuantity and maxLevel',
      'serviceLevel: only applies to reorderPoint "auto"',
      'windowDays: only applies to reorderPoint "auto"',
      'maxLevel: must be above reorderPoint',
    ]);
    expect(issues({ ...rule, reorderPoint: 'auto', serviceLevel: 1, reorderQuantity: 1 })[0]).toMatch(
      /^serviceLevel/,
    );
  });
});

describe('purchase order transitions', () => {
  it('end states go nowhere; partially received goes only to received', () => {
    for (const end of ['rejected', 'failed', 'received', 'cancelled'] as const) {
      expect(purchaseOrderTransitions[end]).toEqual([]);
    }
    expect(purchaseOrderTransitions.partially_received).toEqual(['received']);
    expect(purchaseOrderTransitions.draft).toContain('cancelled');
  });
});
