import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getOrder, listOrders } from '../../domain/orders-read.js';
import { orderStatuses } from '../../domain/orders-status.js';
import { fulfillBody, orderJobs, returnBody } from '../../queues/orders.js';
import { cursors, instantSchema } from '../../schemas/fields.js';
import { movementSchema } from '../../schemas/inventory.js';
import { createOrderBody, orderNumberSchema } from '../../schemas/orders.js';
import { reservationSchema } from '../../schemas/reservations.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

const int = z.number().int();
const at = '2026-12-02T10:00:00.000Z';

const orderExample = {
  orderNumber: 'SO-1001',
  status: 'partially_fulfilled',
  currency: 'EUR',
  shipTo: { country: 'DE', postalCode: '10115' },
  reservationId: '5f0c7a1e-3f7b-4a47-9d3e-0d7f1b2c3a4b',
  version: 3,
  createdAt: at,
  updatedAt: at,
  confirmedAt: at,
  cancelledAt: null,
  expiredAt: null,
  lines: [
    {
      line: 0,
      sku: 'TSHIRT-RED-M',
      unitPrice: 1999,
      ordered: 2,
      openReserved: 1,
      fulfilled: 1,
      cancelled: 0,
      returned: 0,
      restocked: 0,
    },
  ],
};

export const orderSchema = z
  .object({
    orderNumber: z.string(),
    status: z.enum(orderStatuses),
    currency: z.string(),
    shipTo: z.object({ country: z.string(), postalCode: z.string().nullable() }).nullable(),
    reservationId: z.string(),
    version: int.describe('rises by one with every change; events carry it'),
    createdAt: z.string(),
    updatedAt: z.string(),
    confirmedAt: z.string().nullable(),
    cancelledAt: z.string().nullable(),
    expiredAt: z.string().nullable(),
    lines: z.array(
      z.object({
        line: int,
        sku: z.string(),
        unitPrice: int,
        ordered: int.describe('= openReserved + fulfilled + cancelled'),
        openReserved: int,
        fulfilled: int,
        cancelled: int.describe('released by a cancel or by the expiry'),
        returned: int.describe('≤ fulfilled'),
        restocked: int.describe('≤ returned'),
      }),
    ),
  })
  .meta({ example: orderExample });

const orderChangeSchema = z.object({
  order: orderSchema,
  movements: z.array(movementSchema).describe('the ledger rows this job wrote'),
});

const orderDetailSchema = orderSchema
  .extend({
    reservation: reservationSchema,
    movements: z
      .array(movementSchema)
      .describe('every ledger row of the order: reserve, commit, release, return'),
    returns: z.array(
      z.object({
        id: int,
        sku: z.string(),
        quantity: int,
        restock: z.boolean(),
        location: z.string().nullable(),
        movementId: int.nullable(),
        note: z.string().nullable(),
        actor: z.string().nullable(),
        jobId: z.string().nullable(),
        at: z.string(),
      }),
    ),
    history: z
      .array(
        z.object({
          action: z.enum(['create', 'confirm', 'fulfill', 'cancel', 'return', 'expire']),
          fromStatus: z.enum(orderStatuses).nullable(),
          toStatus: z.enum(orderStatuses),
          version: int,
          actor: z.string().nullable(),
          jobId: z.string().nullable(),
          at: z.string(),
        }),
      )
      .describe('every change: who, when, which job'),
  })
  .meta({
    example: {
      ...orderExample,
      reservation: {
        id: orderExample.reservationId,
        reference: 'SO-1001',
        status: 'active',
        expiresAt: null,
        owner: 'order',
        createdAt: at,
        updatedAt: at,
        closedAt: null,
        version: 3,
        lines: [
          {
            line: 0,
            sku: 'TSHIRT-RED-M',
            location: 'default',
            quantity: 2,
            committed: 1,
            released: 0,
            rule: 'single_location',
          },
        ],
      },
      movements: [],
      returns: [],
      history: [
        {
          action: 'create',
          fromStatus: null,
          toStatus: 'reserved',
          version: 1,
          actor: 'pms',
          jobId: 'orders-1a2b',
          at,
        },
        {
          action: 'confirm',
          fromStatus: 'reserved',
          toStatus: 'confirmed',
          version: 2,
          actor: 'pms',
          jobId: 'orders-3c4d',
          at,
        },
        {
          action: 'fulfill',
          fromStatus: 'confirmed',
          toStatus: 'partially_fulfilled',
          version: 3,
          actor: 'pms',
          jobId: 'orders-5e6f',
          at,
        },
      ],
    },
  });

const orderParams = z.object({ orderNumber: orderNumberSchema });
const changed = { 202: jobHandleSchema, 200: orderChangeSchema };

export function registerOrderRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['orders'];

  app.post(
    '/api/pms/orders',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Place an order: every line is reserved in one reservation or the job fails insufficient_stock (job order.create)',
        body: createOrderBody,
        response: { 202: jobHandleSchema, 201: orderChangeSchema },
      },
    },
    (request, reply) =>
      submitJob(
        deps,
        request,
        reply,
        orderJobs.create,
        { ...request.body, holdSeconds: request.body.holdSeconds ?? deps.config.ORDER_HOLD_SECONDS },
        { successStatus: 201 },
      ),
  );

  for (const [action, job, summary] of [
    ['confirm', orderJobs.confirm, 'Confirm (paid): the reservation no longer expires (job order.confirm)'],
    ['cancel', orderJobs.cancel, 'Cancel: releases what is still reserved (job order.cancel)'],
  ] as const) {
    app.post(
      `/api/pms/orders/:orderNumber/${action}`,
      {
        config: { scope: 'pms' },
        schema: { tags, summary, params: orderParams, response: changed },
      },
      (request, reply) => submitJob(deps, request, reply, job, { orderNumber: request.params.orderNumber }),
    );
  }

  app.post(
    '/api/pms/orders/:orderNumber/fulfill',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          'Fulfil some or (no lines) all reserved units: commit movements at the allocated locations (job order.fulfill)',
        params: orderParams,
        body: fulfillBody.nullish(),
        response: changed,
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, orderJobs.fulfill, {
        orderNumber: request.params.orderNumber,
        lines: request.body?.lines,
      }),
  );

  app.post(
    '/api/pms/orders/:orderNumber/returns',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Return fulfilled units; restock: true puts them back on hand (job order.return)',
        params: orderParams,
        body: returnBody,
        response: changed,
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, orderJobs.return, {
        ...request.body,
        orderNumber: request.params.orderNumber,
      }),
  );

  app.get(
    '/api/pms/orders/:orderNumber',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'An order: lines with quantities, its reservation, ledger movements, returns and history',
        params: orderParams,
        response: { 200: orderDetailSchema },
      },
    },
    async (request, reply) => {
      const order = await getOrder(deps.db, request.params.orderNumber);
      if (!order) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Order ${request.params.orderNumber} does not exist`),
        );
      }
      return order;
    },
  );

  app.get(
    '/api/pms/orders',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Orders, oldest first (keyset pagination on creation order)',
        querystring: z.object({
          status: z.enum(orderStatuses).optional(),
          since: instantSchema.optional().describe('orders created at or after this instant'),
          cursor: cursors.order.schema.optional(),
          limit: z.coerce.number().int().min(1).max(200).default(50),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: { 200: z.object({ items: z.array(orderSchema), nextCursor: z.string().nullable() }) },
      },
    },
    (request, reply) => readMayLag(deps, request, reply, (db) => listOrders(db, request.query)),
  );
}
