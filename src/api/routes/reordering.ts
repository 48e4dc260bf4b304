import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getPurchaseOrder, listPurchaseOrders } from '../../domain/purchase-orders.js';
import { listRules } from '../../domain/reorder-rules.js';
import { receivePayload, reorderJobs } from '../../queues/reorder.js';
import { cursors } from '../../schemas/fields.js';
import { locationCodeSchema } from '../../schemas/locations.js';
import { skuSchema } from '../../schemas/products.js';
import { purchaseOrderSchema, purchaseOrderStatuses } from '../../schemas/purchase-orders.js';
import { reorderRulePayload, reorderRuleSchema, resolutionSchema } from '../../schemas/reorder.js';
import { supplierCodeSchema } from '../../schemas/suppliers.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

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
        response: { 202: jobHandleSchema, 200: reorderRuleSchema },
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
        response: { 200: z.object({ items: z.array(reorderRuleSchema), nextCursor: z.string().nullable() }) },
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
