import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { findActiveKeyScopes } from '../db/api-keys.js';
import { ConsumerNotOwnedError } from '../errors/consumer-not-owned-error.js';
import { EventsPrunedError } from '../errors/events-pruned-error.js';
import { PositionAheadError } from '../errors/position-ahead-error.js';
import { TooManyConsumersError } from '../errors/too-many-consumers-error.js';
import { ackConsumer, type ConsumerOwner, getConsumerPosition } from '../events/consumers.js';
import { assertNotAhead, assertRetained } from '../events/event-log.js';
import { lastDrawnSeq } from '../events/horizon.js';
import type { Subscription } from '../events/live-hub.js';
import type { LogEvent } from '../schemas/events.js';
import { typePatternSchema, unknownEventType, unknownTypeSuggestions } from '../schemas/type-patterns.js';
import { allows } from './auth.js';
import type { ApiDeps } from './deps.js';

/**
 * The live event stream over Server-Sent Events and WebSocket. Both are thin layers over the
 * process's LiveHub: they turn events into frames, heartbeat, apply backpressure, and end every
 * open stream when the server closes (so `app.close()` never waits on a client). A stream lives
 * only as long as its key: a revocation (announced on Redis) or an expiry (found by the periodic
 * re-check, EVENT_STREAM_KEY_CHECK_MS) ends it; its client's reconnect then gets a 401.
 */
export interface StreamRegistry {
  sse(
    reply: FastifyReply,
    options: { after: number | undefined; types?: string[]; apiKeyId: string },
  ): FastifyReply;
  /** `owner`: the connection's API key, whose consumers it may use and create (up to its cap). */
  websocket(socket: WebSocket, owner: ConsumerOwner): void;
}

/** Why the server ends a stream. */
type EndReason = 'server_closing' | 'key_revoked';

/** WebSocket close code when the stream's key is revoked or expired (4xxx: the application's own). */
export const keyRevokedCloseCode = 4401;

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

/**
 * A WebSocket's subscription, one state at a time: idle → subscribing (checking the position) →
 * subscribed, and closed from any of them. Every transition leaves the previous state first, and
 * a subscribe that finishes its checks after the state moved on (the client left, or subscribed
 * again) creates nothing: no subscription is ever orphaned or doubled.
 */
type WsState =
  | { kind: 'idle' }
  | { kind: 'subscribing' }
  | { kind: 'subscribed'; subscription: Subscription }
  | { kind: 'closed' };

const sseFrame = (event: LogEvent) => `id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`;

export function registerStreams(app: FastifyInstance, deps: ApiDeps): StreamRegistry {
  /** Every open stream: how to end it, and the key it runs under. */
  const open = new Map<(reason: EndReason) => void, string>();
  const heartbeatMs = deps.config.EVENT_STREAM_HEARTBEAT_MS;

  /** Ends the streams whose key is no longer active (revoked, expired) or lost the `pms` scope. */
  let checking: Promise<void> | undefined;
  let checkAgain = false;
  const closeRevoked = async (): Promise<void> => {
    // One check at a time; a signal during a check runs one more after it.
    if (checking) {
      checkAgain = true;
      return checking;
    }
    checking = (async () => {
      do {
        checkAgain = false;
        if (open.size === 0) continue;
        const streams = [...open];
        const active = await findActiveKeyScopes(deps.db, [...new Set(streams.map(([, key]) => key))]);
        for (const [end, key] of streams) {
          const scopes = active.get(key);
          if (!scopes || !allows(scopes, 'pms')) end('key_revoked');
        }
      } while (checkAgain);
    })()
      .catch((error: unknown) => deps.log.warn({ err: error }, 'could not check the keys of open streams'))
      .finally(() => {
        checking = undefined;
      });
    return checking;
  };
  const stopListening = deps.onKeysChanged(() => void closeRevoked());
  const recheck = setInterval(() => void closeRevoked(), deps.config.EVENT_STREAM_KEY_CHECK_MS);
  recheck.unref();

  // Before the server stops accepting and waits for connections: end every stream now.
  app.addHook('preClose', async () => {
    stopListening();
    clearInterval(recheck);
    for (const end of [...open.keys()]) end('server_closing');
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
      function end(reason?: EndReason) {
        if (ended) return;
        ended = true;
        clearInterval(heartbeat);
        subscription.close();
        open.delete(end);
        if (reason === 'key_revoked') stream.write(': api key revoked or expired\n\n');
        stream.end();
      }
      open.set(end, options.apiKeyId);
      reply.raw.on('close', () => end());
      stream.write('retry: 2000\n: connected\n\n');
      return reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-cache, no-transform')
        .header('x-accel-buffering', 'no')
        .send(stream);
    },

    websocket(socket, owner) {
      let state: WsState = { kind: 'idle' };
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
            if (state.kind === 'subscribed') state.subscription.resume();
          }
        }, 50);
      };

      /** Leaves the current state: a live subscription is closed, a pending one is abandoned. */
      const leave = (next: WsState) => {
        if (state.kind === 'subscribed') state.subscription.close();
        state = next;
      };

      const subscribe = async (request: { after?: number; types?: string[]; consumer?: string }) => {
        if (state.kind === 'closed') return;
        // A newer subscribe replaces the current one, live or still being set up.
        const pending: WsState = { kind: 'subscribing' };
        leave(pending);
        const who = request.consumer ?? consumer;
        let after = request.after;
        try {
          if (after === undefined && who) after = await getConsumerPosition(deps.db, who, owner);
          if (after !== undefined) await assertRetained(deps.db, after);
          if (after !== undefined) await assertNotAhead(deps.db, after);
        } catch (error) {
          if (state === pending) state = { kind: 'idle' };
          throw error;
        }
        // The client left, or subscribed again, while we looked: this subscription is not wanted.
        if (state !== pending) return;
        consumer = who;
        const subscription = deps.events.subscribe({
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
        state = { kind: 'subscribed', subscription };
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
        send({ acked: await ackConsumer(deps.db, { consumer: who, seq, owner }) });
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
          if (error instanceof PositionAheadError) {
            return fail('position_ahead_of_log', error.message, { headSeq: error.headSeq });
          }
          if (error instanceof TooManyConsumersError) {
            return fail('too_many_consumers', error.message, { limit: error.limit });
          }
          if (error instanceof ConsumerNotOwnedError) {
            return fail('consumer_not_owned', error.message, { consumer: error.consumer });
          }
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
        leave({ kind: 'closed' });
        open.delete(close);
      };
      // On server shutdown or the key's revocation: say goodbye, and drop clients that do not
      // answer the close handshake.
      const close = (reason: EndReason) => {
        end();
        if (reason === 'key_revoked') socket.close(keyRevokedCloseCode, 'api key revoked or expired');
        else socket.close(1001, 'server closing');
        setTimeout(() => socket.terminate(), 500).unref();
      };
      open.set(close, owner.apiKeyId);
      socket.on('close', end);
      socket.on('error', end);
    },
  };
}
