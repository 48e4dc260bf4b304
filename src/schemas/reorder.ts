import { z } from 'zod';
import { quantitySchema } from './inventory.js';
import { locationCodeSchema } from './locations.js';
import { skuSchema } from './products.js';
import { supplierCodeSchema } from './suppliers.js';

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
/** A reorder rule as the PMS sets it: the body of its route and the payload of its job. */
export const reorderRulePayload = z
  .object({
    sku: skuSchema,
    location: locationCodeSchema,
    supplier: supplierCodeSchema,
    /** A fixed point in units, or `auto`: computed from the demand of the window at serviceLevel. */
    reorderPoint: z.union([
      z.number().int('must be a whole number of units').min(0).max(1_000_000_000),
      z.literal('auto'),
    ]),
    serviceLevel: z.number().min(0.5).max(0.9999).optional(),
    windowDays: z.number().int().min(1).max(365).optional(),
    reorderQuantity: quantitySchema.optional(),
    maxLevel: quantitySchema.optional(),
  })
  .superRefine((rule, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if ((rule.reorderQuantity === undefined) === (rule.maxLevel === undefined)) {
      issue('reorderQuantity', 'give exactly one of reorderQuantity and maxLevel');
    }
    if (rule.reorderPoint === 'auto') {
      if (rule.serviceLevel === undefined) issue('serviceLevel', 'is required with reorderPoint "auto"');
    } else {
      if (rule.serviceLevel !== undefined) issue('serviceLevel', 'only applies to reorderPoint "auto"');
      if (rule.windowDays !== undefined) issue('windowDays', 'only applies to reorderPoint "auto"');
      if (rule.maxLevel !== undefined && rule.maxLevel <= rule.reorderPoint) {
        issue('maxLevel', 'must be above reorderPoint');
      }
    }
  });
export type ReorderRuleInput = z.output<typeof reorderRulePayload>;

/** An operator's decision on an unresolved purchase order (the body of its `resolve` route). */
export const resolutionSchema = z.discriminatedUnion('action', [
  z.object({
    /** The supplier has the order: take these terms (accepted quantities at most as ordered). */
    action: z.literal('acknowledge'),
    reference: z.string().min(1).max(200).optional(),
    expectedDate: z.iso.date().optional(),
    lines: z
      .array(z.object({ sku: skuSchema, quantity: z.number().int().min(0).max(1_000_000_000) }))
      .min(1)
      .max(500)
      .optional(),
  }),
  /** Send it again: one more round of attempts under the same Idempotency-Key. */
  z.object({ action: z.literal('resend') }),
]);

export type Resolution = z.output<typeof resolutionSchema>;

const int = z.number().int();
/** A level's stock as a rule sees it: position = available + incoming. */
const ruleStockSchema = z.object({
  onHand: int,
  reserved: int,
  available: int,
  incoming: int,
  position: int,
});
/** How a rule's reorder point came about (what GET shows and the planner compares against). */
const pointExplanationSchema = z.union([
  z.object({ mode: z.literal('fixed'), point: int }),
  z.object({
    mode: z.literal('auto'),
    point: int,
    serviceLevel: z.number(),
    z: z.number(),
    leadTimeDays: int,
    windowDays: int,
    demandTotal: int,
    meanDailyDemand: z.number(),
    stdDevDailyDemand: z.number(),
    /** mean × lead time: what is expected to sell while an order is on its way. */
    leadTimeDemand: z.number(),
    /** z × σ × √lead time: the buffer against demand above the mean. */
    safetyBuffer: z.number(),
    /** leadTimeDemand + safetyBuffer before rounding up to whole units. */
    exact: z.number(),
  }),
]);

const exampleRule = {
  id: 1,
  sku: 'TSHIRT-M',
  location: 'default',
  supplier: 'acme',
  reorderPoint: 'auto',
  serviceLevel: 0.95,
  windowDays: 28,
  reorderQuantity: null,
  maxLevel: 120,
  stock: { onHand: 31, reserved: 2, available: 29, incoming: 0, position: 29 },
  point: {
    mode: 'auto',
    point: 33,
    serviceLevel: 0.95,
    z: 1.6448536269514715,
    leadTimeDays: 5,
    windowDays: 28,
    demandTotal: 140,
    meanDailyDemand: 5,
    stdDevDailyDemand: 2.1,
    leadTimeDemand: 25,
    safetyBuffer: 7.72,
    exact: 32.72,
  },
  due: true,
  lastCheck: {
    at: '2026-12-02T10:00:05.000Z',
    outcome: 'ordered',
    reason: null,
    reorderPoint: 33,
    position: 29,
    purchaseOrderId: '0b6c1f5e-5a0e-4f43-9a52-7d0a3c1e2b11',
  },
  version: 1,
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:00.000Z',
};

/** A rule as the API shows it and `reorder-rule.set` returns it. */
export const reorderRuleSchema = z
  .object({
    id: int,
    sku: z.string(),
    location: z.string(),
    supplier: z.string(),
    reorderPoint: z.union([int, z.literal('auto')]),
    serviceLevel: z.number().nullable(),
    windowDays: int.nullable(),
    reorderQuantity: int.nullable(),
    maxLevel: int.nullable(),
    stock: ruleStockSchema,
    point: pointExplanationSchema,
    due: z.boolean(),
    lastCheck: z
      .object({
        at: z.string(),
        outcome: z.enum(['ordered', 'updated', 'unchanged', 'above_point', 'skipped']),
        reason: z.string().nullable(),
        reorderPoint: int,
        position: int,
        purchaseOrderId: z.string().nullable(),
      })
      .nullable(),
    version: int,
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ example: exampleRule });

export type PointExplanation = z.output<typeof pointExplanationSchema>;
export type RuleStock = z.output<typeof ruleStockSchema>;
export type ReorderRule = z.output<typeof reorderRuleSchema>;
export type LastCheck = NonNullable<ReorderRule['lastCheck']>;
