import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listMovements } from '../../domain/ledger.js';
import { getStockAsOf } from '../../domain/levels.js';
import { getReservation } from '../../domain/reservations.js';
import { inventoryJobs, safetyStockPayload, transferPayload } from '../../queues/inventory.js';
import { cursors, instantSchema } from '../../schemas/fields.js';
import {
  adjustPayload,
  levelSchema,
  movementKinds,
  movementSchema,
  setPayload,
  stockStatusSchema,
} from '../../schemas/inventory.js';
import { locationCodeSchema } from '../../schemas/locations.js';
import { skuSchema } from '../../schemas/products.js';
import { reservationSchema, reservePayload, ttlSecondsSchema } from '../../schemas/reservations.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

const statusSchema = z.object({ items: z.array(stockStatusSchema), notFound: z.array(z.string()) });

/** `sku=a,b,c`: 1-100 skus, comma-separated. */
const skuList = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(skuSchema).min(1, 'needs at least 1 sku').max(100, 'at most 100 skus'));
const reservationParams = z.object({ id: z.uuid() });

export function registerInventoryRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['inventory'];
  const movementsResult = { 202: jobHandleSchema, 200: z.object({ movements: z.array(movementSchema) }) };

  app.post(
    '/api/pms/inventory/adjust',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Adjust stock: 1-1000 lines, all or none (job inventory.adjust)',
        body: adjustPayload.meta({
          example: {
            movements: [{ sku: 'TSHIRT-RED-M', location: 'default', delta: 20, reason: 'received' }],
          },
        }),
        response: movementsResult,
      },
    },
    (request, reply) => submitJob(deps, request, reply, inventoryJobs.adjust, request.body),
  );

  app.post(
    '/api/pms/inventory/set',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Record a stock count: sets on_hand through a count movement (job inventory.set)',
        body: setPayload.meta({ example: { sku: 'TSHIRT-RED-M', location: 'default', onHand: 18 } }),
        response: { 202: jobHandleSchema, 200: z.object({ movement: movementSchema }) },
      },
    },
    (request, reply) => submitJob(deps, request, reply, inventoryJobs.set, request.body),
  );

  app.post(
    '/api/pms/inventory/transfer',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Move unreserved stock between locations, both legs at once (job inventory.transfer)',
        body: transferPayload.meta({
          example: { sku: 'TSHIRT-RED-M', from: 'default', to: 'warehouse', quantity: 2 },
        }),
        response: movementsResult,
      },
    },
    (request, reply) => submitJob(deps, request, reply, inventoryJobs.transfer, request.body),
  );

  app.post(
    '/api/pms/inventory/safety-stock',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Set the safety stock held back from available (job inventory.set-safety-stock)',
        body: safetyStockPayload.meta({
          example: { sku: 'TSHIRT-RED-M', location: 'default', safetyStock: 2 },
        }),
        response: { 202: jobHandleSchema, 200: levelSchema },
      },
    },
    (request, reply) => submitJob(deps, request, reply, inventoryJobs.setSafetyStock, request.body),
  );

  app.post(
    '/api/pms/inventory/reservations',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Reserve every line or none; lines without a location are allocated (job reservation.create)',
        body: reservePayload.meta({
          example: {
            reference: 'order-1001',
            lines: [{ sku: 'TSHIRT-RED-M', quantity: 2 }],
            ttlSeconds: 900,
          },
        }),
        response: { 202: jobHandleSchema, 201: reservationSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, inventoryJobs.reserve, request.body, { successStatus: 201 }),
  );

  for (const [action, job, summary] of [
    ['commit', inventoryJobs.commit, 'Turn the reserved stock into a sale (job reservation.commit)'],
    ['release', inventoryJobs.release, 'Give the reserved stock back (job reservation.release)'],
  ] as const) {
    app.post(
      `/api/pms/inventory/reservations/:id/${action}`,
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary,
          params: reservationParams,
          response: { 202: jobHandleSchema, 200: reservationSchema },
        },
      },
      (request, reply) => submitJob(deps, request, reply, job, { reservationId: request.params.id }),
    );
  }

  app.post(
    '/api/pms/inventory/reservations/:id/extend',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Set the expiry to ttlSeconds from now (job reservation.extend)',
        params: reservationParams,
        body: z.object({ ttlSeconds: ttlSecondsSchema }).meta({ example: { ttlSeconds: 1800 } }),
        response: { 202: jobHandleSchema, 200: reservationSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, inventoryJobs.extend, {
        reservationId: request.params.id,
        ttlSeconds: request.body.ttlSeconds,
      }),
  );

  app.get(
    '/api/pms/inventory/reservations/:id',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Read a reservation',
        params: reservationParams,
        response: { 200: reservationSchema },
      },
    },
    async (request, reply) => {
      const reservation = await getReservation(deps.db, request.params.id);
      if (!reservation) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Reservation ${request.params.id} does not exist`),
        );
      }
      return reservation;
    },
  );

  app.get(
    '/api/pms/inventory/status',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Stock per sku: totals and every location (skus that do not exist are listed in notFound)',
        querystring: z.object({ sku: skuList, location: locationCodeSchema.optional() }),
        response: { 200: statusSchema },
      },
    },
    (request) => deps.cache.stockStatus(request.query.sku, request.query.location),
  );

  app.get(
    '/api/pms/inventory/as-of',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Stock as it was at a past moment, recomputed from the ledger',
        querystring: z.object({
          sku: skuList,
          at: instantSchema,
          location: locationCodeSchema.optional(),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: { 200: statusSchema },
      },
    },
    (request, reply) =>
      readMayLag(deps, request, reply, (db) =>
        getStockAsOf(db, request.query.sku, request.query.at, request.query.location),
      ),
  );

  app.get(
    '/api/pms/inventory/history',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'The stock ledger, newest first (keyset pagination)',
        querystring: z.object({
          sku: skuSchema.optional(),
          location: locationCodeSchema.optional(),
          kind: z.enum(movementKinds).optional(),
          since: instantSchema.optional(),
          until: instantSchema.optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
          cursor: cursors.movement.schema.optional(),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: { 200: z.object({ items: z.array(movementSchema), nextCursor: z.string().nullable() }) },
      },
    },
    (request, reply) => readMayLag(deps, request, reply, (db) => listMovements(db, request.query)),
  );
}
