import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { ackConsumer, getConsumerPosition } from '../events/consumers.js';
import { assertRetained, EventsPrunedError, type LogEvent } from '../events/event-log.js';
import { lastDrawnSeq } from '../events/horizon.js';
import type { Subscription } from '../events/live-hub.js';
import { typePatternSchema, unknownEventType, unknownTypeSuggestions } from '../events/type-patterns.js';
import type { ApiDeps } from './deps.js';

/**
 * The live event stream over Server-Sent Events and WebSocket. Both are thin layers over the
 * process's LiveHub: they turn events into frames, heartbeat, apply backpressure, and end every
 * open stream when the server closes (so `app.close()` never waits on a client).
 */
export interface StreamRegistry {
  sse(reply: FastifyReply, options: { after: number | undefined; types?: string[] }): FastifyReply;
  websocket(socket: WebSocket): void;
}

/** A WebSocket client that has this much unsent data is paused; it resumes below a quarter of it. */
const wsHighWaterBytes = 1024 * 1024;

export const consumerNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,100}$/, 'letters, digits and . _ : - (1-100)');
const seqSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const clientMessageSchema = z.union([
  z.object({
    subscribe: z.object({
      after: seqSchema.optional(),
      types: z.array(typePatternSchema).max(50).optional(),
      consumer: consumerNameSchema.optional(),
    }),
  }),
  z.object({ ack: seqSchema, consumer: consumerNameSchema.optional() }),
]);

const sseFrame = (event: LogEvent) => `id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`;

export function registerStreams(app: FastifyInstance, deps: ApiDeps): StreamRegistry {
  const open = new Set<() => void>();
  const heartbeatMs = deps.config.EVENT_STREAM_HEARTBEAT_MS;

  // Before the server stops accepting and waits for connections: end every stream now.
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });

  return {
    sse(reply, options) {
      const stream = new PassThrough();
      let lastSent = options.after ?? -1;
      const subscription = deps.events.subscribe({
        after: options.after,
        types: options.types,
        send(event) {
          lastSent = event.seq;
          return stream.write(sseFrame(event));
        },
        onEnd: () => end(),
      });
      const heartbeat = setInterval(() => {
        // An id-only frame moves the client's Last-Event-ID past filtered-out events without an event.
        const cursor = subscription.cursor();
        const idLine = cursor > lastSent ? `id: ${cursor}\n` : '';
        stream.write(`: heartbeat\n${idLine}\n`);
        if (idLine) lastSent = cursor;
      }, heartbeatMs);
      stream.on('drain', () => subscription.resume());
      let ended = false;
      function end() {
        if (ended) return;
        ended = true;
        clearInterval(heartbeat);
        subscription.close();
        open.delete(end);
        stream.end();
      }
      open.add(end);
      reply.raw.on('close', end);
      stream.write('retry: 2000\n: connected\n\n');
      return reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-cache, no-transform')
        .header('x-accel-buffering', 'no')
        .send(stream);
    },

    websocket(socket) {
      let subscription: Subscription | undefined;
      let consumer: string | undefined;
      let alive = true;
      let drainTimer: NodeJS.Timeout | undefined;
      const send = (message: unknown) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
      };
      const fail = (code: string, message: string, extra: Record<string, unknown> = {}) =>
        send({ error: { code, message, ...extra } });

      const heartbeat = setInterval(() => {
        if (!alive) {
          socket.terminate();
          return;
        }
        alive = false;
        socket.ping();
      }, heartbeatMs);
      socket.on('pong', () => {
        alive = true;
      });

      const watchDrain = () => {
        drainTimer ??= setInterval(() => {
          if (socket.bufferedAmount < wsHighWaterBytes / 4) {
            clearInterval(drainTimer);
            drainTimer = undefined;
            subscription?.resume();
          }
        }, 50);
      };

      const subscribe = async (request: { after?: number; types?: string[]; consumer?: string }) => {
        subscription?.close();
        subscription = undefined;
        consumer = request.consumer ?? consumer;
        let after = request.after;
        if (after === undefined && consumer) after = await getConsumerPosition(deps.db, consumer);
        if (after !== undefined) await assertRetained(deps.db, after);
        subscription = deps.events.subscribe({
          after,
          types: request.types,
          send(event) {
            socket.send(JSON.stringify({ event }));
            if (socket.bufferedAmount < wsHighWaterBytes) return true;
            watchDrain();
            return false;
          },
          onEnd: (reason) =>
            socket.close(
              reason === 'closed' ? 1001 : 1011,
              reason === 'closed' ? 'server closing' : 'stream error',
            ),
        });
        send({
          subscribed: { after: after ?? null, types: request.types ?? null, consumer: consumer ?? null },
        });
      };

      const ack = async (seq: number, name: string | undefined) => {
        const who = name ?? consumer;
        if (!who)
          return fail(
            'validation_failed',
            'An ack needs a consumer: subscribe with one or send { ack, consumer }',
          );
        if (seq > (await lastDrawnSeq(deps.db)))
          return fail('invalid_position', `seq ${seq} is beyond the end of the log`);
        send({ acked: await ackConsumer(deps.db, { consumer: who, seq }) });
      };

      socket.on('message', (raw) => {
        let parsed: z.infer<typeof clientMessageSchema>;
        try {
          const result = clientMessageSchema.safeParse(JSON.parse(raw.toString()));
          if (!result.success) {
            const errors = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
            // Only unknown type patterns wrong: the same code as the feed and webhook endpoints.
            const unknown = unknownTypeSuggestions(result.error.issues);
            if (unknown)
              return fail(unknownEventType, errors.map((e) => e.message).join('; '), {
                errors,
                suggestions: unknown,
              });
            return fail(
              'validation_failed',
              'Send { "subscribe": { "after", "types", "consumer" } } or { "ack": seq }',
              { errors },
            );
          }
          parsed = result.data;
        } catch {
          return fail('malformed_json', 'Messages must be JSON');
        }
        const work = 'subscribe' in parsed ? subscribe(parsed.subscribe) : ack(parsed.ack, parsed.consumer);
        work.catch((error: unknown) => {
          if (error instanceof EventsPrunedError) {
            fail('events_pruned', error.message, { oldestSeq: error.oldestSeq });
            socket.close(4410, 'events pruned');
            return;
          }
          app.log.error({ err: error }, 'websocket request failed');
          fail('internal_error', 'Something went wrong on our side');
        });
      });

      const end = () => {
        clearInterval(heartbeat);
        clearInterval(drainTimer);
        subscription?.close();
        open.delete(close);
      };
      // On server shutdown: say goodbye, and drop clients that do not answer the close handshake.
      const close = () => {
        end();
        socket.close(1001, 'server closing');
        setTimeout(() => socket.terminate(), 500).unref();
      };
      open.add(close);
      socket.on('close', end);
      socket.on('error', end);
    },
  };
}
