import { z } from 'zod';
import type { Config } from '../config.js';
import type { PurchaseOrder } from '../domain/purchase-orders.js';
import type { CheckResult } from '../domain/reorder-planner.js';
import type { ReorderRule } from '../domain/reorder-rules.js';
import { backoffTypes } from './backoff.js';
import { locationCodeSchema, quantitySchema, unitCostSchema } from './inventory.js';
import { defineJob, defineScheduler, type Scheduler } from './job.js';
import { skuSchema } from './products.js';

export const supplierCodeSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9._-]{1,64}$/,
    'supplier must be a code of 1-64 letters, digits, dot, underscore or hyphen',
  )
  .refine((code) => code !== '.' && code !== '..', 'supplier must not be . or ..');

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
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

const purchaseOrderId = z.uuid();

export const receivePayload = z.object({
  purchaseOrderId,
  lines: z
    .array(
      z.object({
        sku: skuSchema,
        quantity: quantitySchema,
        /** The cost the units arrived at (minor units), kept on the line; left out: the line's. Optional: older jobs carry none. */
        unitCost: unitCostSchema.optional(),
      }),
    )
    .min(1, 'needs at least 1 line')
    .max(500, 'at most 500 lines')
    .superRefine((lines, ctx) => {
      const seen = new Set<string>();
      lines.forEach((line, index) => {
        if (seen.has(line.sku)) {
          ctx.addIssue({ code: 'custom', path: [index, 'sku'], message: 'names a sku a second time' });
        }
        seen.add(line.sku);
      });
    }),
});

export const cancelPayload = z.object({
  purchaseOrderId,
  reason: z.string().min(1).max(500).optional(),
});

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

export const resolvePayload = z.object({ purchaseOrderId, resolution: resolutionSchema });

export interface ScanResult {
  events: number;
  levels: number;
  checks: number;
  /** Drafts whose send job was missing, queued again. */
  resentDrafts: number;
}

export interface SendResult {
  purchaseOrderId: string;
  status: string;
  attempt?: number;
  statusCode?: number;
}

export const reorderJobs = {
  setRule: defineJob<ReorderRule>()({
    name: 'reorder-rule.set',
    queue: 'reorder',
    payload: reorderRulePayload,
  }),
  /** Reads new stock.moved events and queues a check for every rule at or below its point. */
  scan: defineJob<ScanResult>()({
    name: 'reorder.scan',
    queue: 'reorder',
    payload: z.object({ limit: z.number().int().min(1).max(100_000).default(5000) }),
    // Scheduled every second or so: keep no trail of them in Redis.
    options: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
  }),
  check: defineJob<CheckResult>()({
    name: 'reorder.check',
    queue: 'reorder',
    payload: z.object({ ruleId: z.number().int().min(1) }),
    options: { removeOnComplete: { age: 86_400 } },
  }),
  /** One purchase order to its supplier's API; attempts and backoff are set when it is queued. */
  send: defineJob<SendResult>()({
    name: 'purchase-order.send',
    queue: 'reorder',
    payload: z.object({ purchaseOrderId }),
    options: { backoff: { type: backoffTypes.supplier } },
  }),
  receive: defineJob<PurchaseOrder>()({
    name: 'purchase-order.receive',
    queue: 'reorder',
    payload: receivePayload,
  }),
  cancel: defineJob<PurchaseOrder>()({
    name: 'purchase-order.cancel',
    queue: 'reorder',
    payload: cancelPayload,
  }),
  /** An operator acknowledges an unresolved order, or has it sent again. */
  resolve: defineJob<PurchaseOrder>()({
    name: 'purchase-order.resolve',
    queue: 'reorder',
    payload: resolvePayload,
  }),
};

export const reorderSchedulers = (config: Pick<Config, 'REORDER_SCAN_INTERVAL_MS'>): Scheduler[] => [
  defineScheduler(reorderJobs.scan, {
    id: 'reorder-scan',
    every: config.REORDER_SCAN_INTERVAL_MS,
    payload: { limit: 5000 },
  }),
];
