import { z } from 'zod';
import type { Config } from '../config.js';
import type { CheckResult } from '../domain/reorder-planner.js';
import { quantitySchema, unitCostSchema } from '../schemas/inventory.js';
import { skuSchema } from '../schemas/products.js';
import type { PurchaseOrder } from '../schemas/purchase-orders.js';
import { type ReorderRule, reorderRulePayload, resolutionSchema } from '../schemas/reorder.js';
import { backoffTypes } from './backoff.js';
import { defineJob, defineScheduler, type Scheduler } from './job.js';

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
