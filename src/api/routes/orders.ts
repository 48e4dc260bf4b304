import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getOrder, listOrders } from '../../domain/orders-read.js';
import { fulfillBody, orderJobs } from '../../queues/orders.js';
import { cursors, instantSchema } from '../../schemas/fields.js';
import {
  createOrderBody,
  orderChangeSchema,
  orderDetailSchema,
  orderNumberSchema,
  orderSchema,
  orderStatuses,
  returnBody,
} from '../../schemas/orders.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

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
