import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HttpProblem } from '../../errors/http-problem.js';
import { refuseUrl } from '../../outbound/address-guard.js';
import { replayRange, webhookJobs } from '../../queues/webhooks.js';
import { type EndpointFields, endpointFieldsSchema } from '../../schemas/webhook-endpoints.js';
import {
  webhookAttemptSchema,
  webhookDeliverySchema,
  webhookEndpointSchema,
} from '../../schemas/webhooks.js';
import { getDelivery, listDeliveries } from '../../webhooks/deliveries.js';
import { queueDeliveryJobs, requeueDeliveries } from '../../webhooks/delivery-jobs.js';
import {
  createEndpoint,
  deleteEndpoint,
  enableEndpoint,
  getEndpointRow,
  listEndpoints,
  rotateSecret,
  toEndpoint,
  updateEndpoint,
} from '../../webhooks/endpoints.js';
import { principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { writeDirectly } from '../direct-write.js';
import { jobHandleSchema, queueNamedJobs, submitJob } from '../submit-job.js';

/** The previous secret keeps signing this long after a rotation. */
const rotationOverlapMs = 24 * 3_600_000;

const idParams = z.object({ id: z.uuid() });
const notFound = (id: string) => new HttpProblem(404, 'not_found', `Webhook endpoint ${id} does not exist`);

export function registerWebhookRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['webhooks'];

  const checkUrl = (fields: EndpointFields) => {
    const reason = refuseUrl(fields.url, deps.config.WEBHOOK_ALLOW_PRIVATE_TARGETS);
    if (reason) {
      throw new HttpProblem(422, 'unsafe_webhook_url', `The url ${reason}`, {
        errors: [{ in: 'body', path: 'url', message: reason }],
      });
    }
  };

  app.post(
    '/api/webhooks/endpoints',
    {
      config: {
        scope: 'admin',
        openapi: {
          headers: { 201: { Location: { description: 'The new endpoint', schema: { type: 'string' } } } },
        },
      },
      schema: {
        tags,
        summary: 'Register an endpoint; the answer carries its signing secret, shown only this once',
        body: endpointFieldsSchema,
        response: { 201: webhookEndpointSchema.extend({ secret: z.string() }) },
      },
    },
    async (request, reply) => {
      checkUrl(request.body);
      // Endpoint settings are written here, in one transaction that records the change as an event.
      const { endpoint, secret } = await writeDirectly(deps, request, (trx) =>
        createEndpoint(trx, request.body, deps.secrets),
      );
      return reply
        .code(201)
        .header('Location', `/api/webhooks/endpoints/${endpoint.id}`)
        .send({ ...endpoint, secret });
    },
  );

  app.get(
    '/api/webhooks/endpoints',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Every endpoint',
        response: { 200: z.object({ items: z.array(webhookEndpointSchema) }) },
      },
    },
    async () => ({ items: await listEndpoints(deps.db) }),
  );

  app.get(
    '/api/webhooks/endpoints/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'One endpoint (never its secret)',
        params: idParams,
        response: { 200: webhookEndpointSchema },
      },
    },
    async (request) => {
      const row = await getEndpointRow(deps.db, request.params.id);
      if (!row) throw notFound(request.params.id);
      return toEndpoint(row);
    },
  );

  app.put(
    '/api/webhooks/endpoints/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Replace url, event types, description and rate limit',
        params: idParams,
        body: endpointFieldsSchema,
        response: { 200: webhookEndpointSchema },
      },
    },
    async (request) => {
      checkUrl(request.body);
      const endpoint = await writeDirectly(deps, request, (trx) =>
        updateEndpoint(trx, request.params.id, request.body),
      );
      if (!endpoint) throw notFound(request.params.id);
      return endpoint;
    },
  );

  app.delete(
    '/api/webhooks/endpoints/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Delete an endpoint and its delivery history',
        params: idParams,
        response: { 204: z.null().meta({ description: 'Deleted' }) },
      },
    },
    async (request, reply) => {
      const deleted = await writeDirectly(deps, request, (trx) => deleteEndpoint(trx, request.params.id));
      if (!deleted) throw notFound(request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/webhooks/endpoints/:id/rotate-secret',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'New signing secret (shown once); the old one keeps signing alongside it for 24 h',
        params: idParams,
        response: { 200: webhookEndpointSchema.extend({ secret: z.string() }) },
      },
    },
    async (request) => {
      const rotated = await writeDirectly(deps, request, (trx) =>
        rotateSecret(trx, request.params.id, rotationOverlapMs, deps.secrets),
      );
      if (!rotated) throw notFound(request.params.id);
      return { ...rotated.endpoint, secret: rotated.secret };
    },
  );

  app.post(
    '/api/webhooks/endpoints/:id/enable',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Enable a disabled endpoint; the deliveries held meanwhile are sent again, oldest first',
        params: idParams,
        response: { 200: webhookEndpointSchema },
      },
    },
    async (request) => {
      const endpoint = await writeDirectly(deps, request, (trx) => enableEndpoint(trx, request.params.id));
      if (!endpoint) throw notFound(request.params.id);
      return endpoint;
    },
  );

  app.get(
    '/api/webhooks/endpoints/:id/deliveries',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: "An endpoint's deliveries, newest event first (pass nextBefore as before for the next page)",
        params: idParams,
        querystring: z.object({
          status: z.enum(['pending', 'delivered', 'failed', 'held']).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
          before: z.coerce.number().int().min(1).optional(),
        }),
        response: {
          200: z.object({ items: z.array(webhookDeliverySchema), nextBefore: z.number().int().nullable() }),
        },
      },
    },
    async (request) => {
      if (!(await getEndpointRow(deps.db, request.params.id))) throw notFound(request.params.id);
      return listDeliveries(deps.db, { endpointId: request.params.id, ...request.query });
    },
  );

  app.get(
    '/api/webhooks/deliveries/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'One delivery with every attempt (time, status, duration, response excerpt or error)',
        params: idParams,
        response: { 200: webhookDeliverySchema.extend({ attemptLog: z.array(webhookAttemptSchema) }) },
      },
    },
    async (request) => {
      const delivery = await getDelivery(deps.db, request.params.id);
      if (!delivery) throw new HttpProblem(404, 'not_found', `Delivery ${request.params.id} does not exist`);
      return delivery;
    },
  );

  app.post(
    '/api/webhooks/deliveries/:id/retry',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Send a delivery again now, with a fresh retry schedule (202 + job handle)',
        params: idParams,
        response: { 202: jobHandleSchema },
      },
    },
    async (request, reply) => {
      // The job is added before the requeue commits: a failed enqueue leaves the delivery as it was.
      const id = await queueNamedJobs(deps, request, 'ask for the retry again', () =>
        writeDirectly(deps, request, async (trx) => {
          const requeued = await requeueDeliveries(trx, [request.params.id]);
          if (requeued.length === 0)
            throw new HttpProblem(404, 'not_found', `Delivery ${request.params.id} does not exist`);
          const [jobId] = await queueDeliveryJobs(trx, deps, requeued, 'retry', {
            actor: principalOf(request).name,
            requestId: request.id,
          });
          return jobId!;
        }),
      );
      return reply
        .code(202)
        .header('Location', `/api/jobs/${id}`)
        .send({ id, queue: 'webhooks', name: webhookJobs.deliver.name, state: 'waiting' });
    },
  );

  app.post(
    '/api/webhooks/endpoints/:id/replay',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Send the endpoint every matching event of a time range again (job webhook.replay)',
        params: idParams,
        body: replayRange.meta({ example: { since: '2026-12-01T00:00:00Z' } }),
        response: { 202: jobHandleSchema, 200: z.object({ events: z.number().int() }) },
      },
    },
    async (request, reply) => {
      if (!(await getEndpointRow(deps.db, request.params.id))) throw notFound(request.params.id);
      return submitJob(deps, request, reply, webhookJobs.replay, {
        ...request.body,
        endpointId: request.params.id,
      });
    },
  );
}
