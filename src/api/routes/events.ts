import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ConsumerNotOwnedError } from '../../errors/consumer-not-owned-error.js';
import { EventsPrunedError } from '../../errors/events-pruned-error.js';
import { HttpProblem } from '../../errors/http-problem.js';
import { PositionAheadError } from '../../errors/position-ahead-error.js';
import { TooManyConsumersError } from '../../errors/too-many-consumers-error.js';
import { ackConsumer, type ConsumerOwner, consumerStatuses } from '../../events/consumers.js';
import { assertNotAhead, assertRetained, prunedThroughSeq, readEventPage } from '../../events/event-log.js';
import { lastDrawnSeq } from '../../events/horizon.js';
import { describeEventTypes } from '../../schemas/event-types.js';
import { logEventSchema } from '../../schemas/events.js';
import { typeListQuerySchema } from '../../schemas/type-patterns.js';
import { allows, principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { consumerNameSchema, registerStreams } from '../event-stream.js';
import { lsnHeaders, lsnQuery, readFeedMayLag } from '../replica-reads.js';
import { takeStreamSlot } from '../stream-caps.js';

/** How long a read waits for in-flight writers before answering with the last proven horizon. */
const proofWaitMs = 1000;

/** The catalogue never changes while the process runs: its JSON Schemas are made once. */
const eventTypeCatalogue = describeEventTypes();

const seq = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const prunedProblem = (error: EventsPrunedError) =>
  new HttpProblem(410, 'events_pruned', error.message, { oldestSeq: error.oldestSeq });

/** A resume position must be inside the log: not pruned (410), not beyond its head (400). */
async function retained(deps: ApiDeps, after: number): Promise<void> {
  try {
    await assertRetained(deps.db, after);
    await assertNotAhead(deps.db, after);
  } catch (error) {
    if (error instanceof PositionAheadError) {
      throw new HttpProblem(400, 'position_ahead_of_log', error.message, { headSeq: error.headSeq });
    }
    throw error instanceof EventsPrunedError ? prunedProblem(error) : error;
  }
}

const consumersProblem = (error: TooManyConsumersError) =>
  new HttpProblem(429, 'too_many_consumers', error.message, { details: { limit: error.limit } });
const notOwnedProblem = (error: ConsumerNotOwnedError) =>
  new HttpProblem(403, 'consumer_not_owned', error.message, { details: { consumer: error.consumer } });

export async function registerEventRoutes(root: FastifyInstance, deps: ApiDeps): Promise<void> {
  /** The caller as the owner of event consumers (docs/events.md, "Consumers and sync status"). */
  const ownerOf = (request: FastifyRequest): ConsumerOwner => {
    const principal = principalOf(request);
    return {
      apiKeyId: principal.id,
      maxConsumers: deps.config.CONSUMERS_PER_KEY,
      admin: allows(principal.scopes, 'admin'),
    };
  };
  await root.register(websocket, {
    options: { maxPayload: 64 * 1024 },
    // The stream registry closes its sockets itself (with a bounded handshake) before this runs.
    preClose(done) {
      this.websocketServer.close(() => undefined);
      done();
    },
  });
  const app = root.withTypeProvider<ZodTypeProvider>();
  const streams = registerStreams(root, deps);
  const tags = ['events'];

  app.get(
    '/api/pms/events',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'The event log in seq order after `after` (the feed); never skips an event',
        querystring: z.object({
          after: seq.default(0),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
          types: typeListQuerySchema.optional(),
          ...lsnQuery,
        }),
        headers: lsnHeaders,
        response: {
          200: z.object({
            items: z.array(logEventSchema),
            nextAfter: z.number().int(),
            headSeq: z.number().int(),
          }),
        },
      },
    },
    async (request, reply) => {
      const { after, limit, types } = request.query;
      await retained(deps, after);
      const proven = await deps.horizon.refresh(proofWaitMs);
      return readFeedMayLag(deps, request, reply, proven, async (db, horizon) => ({
        ...(await readEventPage(db, { after, limit, types, horizon })),
        headSeq: horizon,
      }));
    },
  );

  app.get(
    '/api/pms/events/types',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Every event type the platform writes, with the JSON Schema of its `data`',
        response: {
          200: z.object({
            items: z.array(
              z.object({
                name: z.string(),
                description: z.string(),
                writtenBy: z.enum(['application', 'trigger']),
                dataSchema: z.record(z.string(), z.unknown()),
              }),
            ),
          }),
        },
      },
    },
    async () => ({ items: eventTypeCatalogue }),
  );

  app.get(
    '/api/pms/events/stream',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Live events as Server-Sent Events (`id:` is the seq; resume with Last-Event-ID or ?after=)',
        querystring: z.object({ after: seq.optional(), types: typeListQuerySchema.optional() }),
        headers: z.object({
          'last-event-id': z
            .string()
            .regex(/^\d{1,16}$/, 'must be an event seq')
            .optional(),
        }),
      },
    },
    async (request, reply) => {
      // A reconnecting EventSource sends Last-Event-ID with the original URL: the header wins.
      const header = request.headers['last-event-id'];
      const after = header !== undefined ? Number(header) : request.query.after;
      if (after !== undefined) await retained(deps, after);
      takeStreamSlot(deps.limits.streams, request);
      return streams.sse(reply, { after, types: request.query.types, apiKeyId: principalOf(request).id });
    },
  );

  app.get(
    '/api/pms/events/ws',
    {
      config: { scope: 'pms' },
      websocket: true,
      // Before the upgrade: a refused stream is a 429 problem, never a 101.
      preHandler: async (request) => takeStreamSlot(deps.limits.streams, request),
      schema: {
        tags,
        summary:
          'Live events over WebSocket: send { subscribe: { after, types, consumer } }, then { ack: seq }',
      },
    },
    (socket, request) => streams.websocket(socket, ownerOf(request)),
  );

  app.post(
    '/api/pms/sync/ack',
    {
      config: { scope: 'pms' },
      schema: {
        tags: ['sync'],
        summary:
          "Record a consumer's position: every event up to seq is processed (positions only move forward). A consumer belongs to the key that created it: another key's is 403 consumer_not_owned (admin keys excepted)",
        body: z
          .object({
            consumer: consumerNameSchema,
            seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
          })
          .meta({ example: { consumer: 'pms-main', seq: 0 } }),
        response: {
          200: z.object({ consumer: z.string(), ackedSeq: z.number().int(), lastAckAt: z.string() }),
        },
      },
    },
    async (request) => {
      if (request.body.seq > (await lastDrawnSeq(deps.db))) {
        throw new HttpProblem(
          422,
          'invalid_position',
          `seq ${request.body.seq} is beyond the end of the event log`,
        );
      }
      try {
        return await ackConsumer(deps.db, { ...request.body, owner: ownerOf(request) });
      } catch (error) {
        if (error instanceof ConsumerNotOwnedError) throw notOwnedProblem(error);
        throw error instanceof TooManyConsumersError ? consumersProblem(error) : error;
      }
    },
  );

  app.get(
    '/api/pms/sync/status',
    {
      config: { scope: 'pms' },
      schema: {
        tags: ['sync'],
        summary:
          "This key's consumers (every consumer for an admin key) against the head of the log: ackedSeq, headSeq, lag, lastAckAt",
        response: {
          200: z.object({
            headSeq: z.number().int(),
            oldestSeq: z.number().int(),
            consumers: z.array(
              z.object({
                consumer: z.string(),
                ackedSeq: z.number().int(),
                headSeq: z.number().int(),
                lag: z.number().int(),
                lagCapped: z.boolean(),
                lastAckAt: z.string().nullable(),
                owner: z.string().nullable().meta({ description: 'Name of the API key it belongs to' }),
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const headSeq = await deps.horizon.refresh(proofWaitMs);
      const [consumers, pruned] = await Promise.all([
        consumerStatuses(deps.db, headSeq, ownerOf(request)),
        prunedThroughSeq(deps.db),
      ]);
      return { headSeq, oldestSeq: pruned + 1, consumers };
    },
  );
}
