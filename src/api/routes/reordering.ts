import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getPurchaseOrder, listPurchaseOrders, purchaseOrderStatuses } from '../../domain/purchase-orders.js';
import { listRules } from '../../domain/reorder-rules.js';
import { receivePayload, reorderJobs } from '../../queues/reorder.js';
import { cursors } from '../../schemas/fields.js';
import { locationCodeSchema } from '../../schemas/locations.js';
import { skuSchema } from '../../schemas/products.js';
import { reorderRulePayload, resolutionSchema, supplierCodeSchema } from '../../schemas/reorder.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

const int = z.number().int();
const stockSchema = z.object({ onHand: int, reserved: int, available: int, incoming: int, position: int });
const pointSchema = z.union([
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
    leadTimeDemand: z.number(),
    safetyBuffer: z.number(),
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

export const ruleSchema = z
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
    stock: stockSchema,
    point: pointSchema,
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

const lineSchema = z.object({
  sku: z.string(),
  location: z.string(),
  ruleId: int,
  quantity: int,
  acceptedQuantity: int.nullable(),
  receivedQuantity: int,
  outstanding: int,
  explanation: z.object({
    basis: z.enum(['reorder_quantity', 'max_level']),
    reorderPoint: int,
    available: int,
    incoming: int,
    reorderQuantity: int.nullable(),
    maxLevel: int.nullable(),
    rawQuantity: int,
    minOrderQuantity: int,
    orderMultiple: int,
    quantity: int,
    text: z.string(),
  }),
});

const attemptSchema = z.object({
  attempt: int,
  jobId: z.string().nullable(),
  startedAt: z.string(),
  durationMs: int,
  statusCode: int.nullable(),
  outcome: z.enum(['acknowledged', 'rejected', 'retry', 'failed', 'refused', 'protocol_error']),
  error: z.string().nullable(),
  responseExcerpt: z.string().nullable(),
  retryAfterMs: int.nullable(),
});

const examplePurchaseOrder = {
  id: '0b6c1f5e-5a0e-4f43-9a52-7d0a3c1e2b11',
  number: 'PO-000001',
  supplier: 'acme',
  location: 'default',
  status: 'acknowledged',
  supplierReference: 'ACME-1001',
  expectedDate: '2026-12-07',
  failure: null,
  cancelReason: null,
  sentAt: '2026-12-02T10:00:05.200Z',
  acknowledgedAt: '2026-12-02T10:00:05.260Z',
  closedAt: null,
  version: 3,
  createdAt: '2026-12-02T10:00:05.100Z',
  updatedAt: '2026-12-02T10:00:05.260Z',
  lines: [
    {
      sku: 'TSHIRT-M',
      location: 'default',
      ruleId: 1,
      quantity: 96,
      acceptedQuantity: 96,
      receivedQuantity: 0,
      outstanding: 96,
      explanation: {
        basis: 'max_level',
        reorderPoint: 33,
        available: 29,
        incoming: 0,
        reorderQuantity: null,
        maxLevel: 120,
        rawQuantity: 91,
        minOrderQuantity: 10,
        orderMultiple: 6,
        quantity: 96,
        text: 'available 29 + incoming 0 = 29 ≤ reorder point 33; max level 120 − (available 29 + incoming 0) = 91; at least the minimum order 10 → 91; rounded up to a multiple of 6 → 96',
      },
    },
  ],
  attempts: [
    {
      attempt: 1,
      jobId: 'reorder-send-0b6c1f5e-5a0e-4f43-9a52-7d0a3c1e2b11',
      startedAt: '2026-12-02T10:00:05.210Z',
      durationMs: 48,
      statusCode: 200,
      outcome: 'acknowledged',
      error: null,
      responseExcerpt: '{"status":"accepted","reference":"ACME-1001","expectedDate":"2026-12-07"}',
      retryAfterMs: null,
    },
  ],
};

export const purchaseOrderSchema = z
  .object({
    id: z.string(),
    number: z.string(),
    supplier: z.string(),
    location: z.string(),
    status: z.enum(purchaseOrderStatuses),
    supplierReference: z.string().nullable(),
    expectedDate: z.string().nullable(),
    failure: z.record(z.string(), z.unknown()).nullable(),
    cancelReason: z.string().nullable(),
    sentAt: z.string().nullable(),
    acknowledgedAt: z.string().nullable(),
    closedAt: z.string().nullable(),
    version: int,
    createdAt: z.string(),
    updatedAt: z.string(),
    lines: z.array(lineSchema),
    attempts: z.array(attemptSchema).optional(),
  })
  .meta({ example: examplePurchaseOrder });

const idParams = z.object({ id: z.uuid() });
const limit = z.coerce.number().int().min(1).max(200).default(50);

export function registerReorderingRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['reordering'];

  app.put(
    '/api/pms/inventory/reorder-rules',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Create or replace the reorder rule of a sku at a location (job reorder-rule.set)',
        description:
          'reorderPoint is a number of units, or "auto" with serviceLevel: mean daily demand x lead time + ' +
          'z x sd(daily demand) x sqrt(lead time), demand from sale/commit movements over windowDays. ' +
          'Give exactly one of reorderQuantity and maxLevel.',
        body: reorderRulePayload.meta({
          examples: [
            {
              sku: 'TSHIRT-M',
              location: 'default',
              supplier: 'acme',
              reorderPoint: 'auto',
              serviceLevel: 0.95,
              maxLevel: 120,
            },
            { sku: 'MUG', location: 'default', supplier: 'acme', reorderPoint: 20, reorderQuantity: 50 },
          ],
        }),
        response: { 202: jobHandleSchema, 200: ruleSchema },
      },
    },
    (request, reply) => submitJob(deps, request, reply, reorderJobs.setRule, request.body),
  );

  app.get(
    '/api/pms/inventory/reorder-rules',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Reorder rules with on hand, available, incoming and the computed reorder point',
        querystring: z.object({
          sku: skuSchema.optional(),
          location: locationCodeSchema.optional(),
          supplier: supplierCodeSchema.optional(),
          limit,
          cursor: cursors.reorderRule.schema.optional(),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: { 200: z.object({ items: z.array(ruleSchema), nextCursor: z.string().nullable() }) },
      },
    },
    (request, reply) => readMayLag(deps, request, reply, (db) => listRules(db, request.query)),
  );

  app.get(
    '/api/pms/purchase-orders',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Purchase orders with their lines, newest first (keyset pagination)',
        querystring: z.object({
          status: z.enum(purchaseOrderStatuses).optional(),
          supplier: supplierCodeSchema.optional(),
          sku: skuSchema.optional(),
          limit,
          cursor: cursors.purchaseOrder.schema.optional(),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: {
          200: z.object({ items: z.array(purchaseOrderSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    (request, reply) => readMayLag(deps, request, reply, (db) => listPurchaseOrders(db, request.query)),
  );

  app.get(
    '/api/pms/purchase-orders/:id',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'A purchase order with its lines (and how each quantity was computed) and every send attempt',
        params: idParams,
        response: { 200: purchaseOrderSchema },
      },
    },
    async (request, reply) => {
      const order = await getPurchaseOrder(deps.db, request.params.id);
      if (!order) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Purchase order ${request.params.id} does not exist`),
        );
      }
      return order;
    },
  );

  app.post(
    '/api/pms/purchase-orders/:id/receive',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Receive goods: receipt movements, lower incoming, close when complete (job purchase-order.receive)',
        params: idParams,
        body: receivePayload
          .omit({ purchaseOrderId: true })
          .meta({ examples: [{ lines: [{ sku: 'TSHIRT-M', quantity: 48 }] }] }),
        response: { 202: jobHandleSchema, 200: purchaseOrderSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, reorderJobs.receive, {
        ...request.body,
        purchaseOrderId: request.params.id,
      }),
  );

  app.post(
    '/api/pms/purchase-orders/:id/resolve',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Decide an unresolved purchase order: acknowledge it with the terms the supplier confirmed, or send it again (job purchase-order.resolve)',
        description:
          'An unresolved order may have reached the supplier without an answer Stockflow could take; its rules ' +
          'do not order again until it is resolved here or cancelled. "resend" sends it with the same ' +
          'Idempotency-Key; "acknowledge" takes accepted quantities (at most as ordered; lines left out: as ordered).',
        params: idParams,
        body: resolutionSchema.meta({
          examples: [
            {
              action: 'acknowledge',
              reference: 'ACME-1001',
              expectedDate: '2026-12-07',
              lines: [{ sku: 'TSHIRT-M', quantity: 96 }],
            },
            { action: 'resend' },
          ],
        }),
        response: { 202: jobHandleSchema, 200: purchaseOrderSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, reorderJobs.resolve, {
        purchaseOrderId: request.params.id,
        resolution: request.body,
      }),
  );

  app.post(
    '/api/pms/purchase-orders/:id/cancel',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Cancel a draft, sent, unresolved or acknowledged purchase order (job purchase-order.cancel)',
        params: idParams,
        body: z
          .object({ reason: z.string().min(1).max(500).optional() })
          .meta({ examples: [{ reason: 'ordered by phone instead' }] })
          // No body at all is fine: Fastify hands such a request null.
          .nullish(),
        response: { 202: jobHandleSchema, 200: purchaseOrderSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, reorderJobs.cancel, {
        purchaseOrderId: request.params.id,
        reason: request.body?.reason,
      }),
  );
}
