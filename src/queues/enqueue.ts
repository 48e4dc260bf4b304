import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { stringify } from 'safe-stable-stringify';
import type { AnyJob, JobData, PayloadInput, QueueName } from './job.js';
import type { Queues } from './queues.js';

export interface EnqueueContext {
  queues: Queues;
  redis: Redis;
  prefix: string;
  idempotencyTtlSeconds: number;
}

export interface EnqueueMeta {
  /** API key name: recorded as the actor of every change the job makes. */
  actor: string;
  /** API key id: idempotency keys are scoped per caller. */
  actorId: string;
  requestId?: string;
  /** With the caller's key: what the request addressed (method and path), so one key never spans routes. */
  idempotency?: { key: string; target: string };
}

export interface Enqueued {
  id: string;
  queue: QueueName;
  name: string;
  state: string;
  /** True when an earlier request with the same Idempotency-Key created the job. */
  replayed: boolean;
}

/** The Idempotency-Key was used before with another payload. */
export class IdempotencyKeyReusedError extends Error {
  constructor(readonly jobId: string) {
    super('This Idempotency-Key was already used with a different request');
    this.name = 'IdempotencyKeyReusedError';
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('base64url');

/**
 * Validates the payload against the job's schema and adds the job. With an idempotency key the
 * job id is derived from (caller, target, key): the same request gets the same job back, and a
 * different payload under the same key is refused.
 */
export async function enqueue<J extends AnyJob>(
  ctx: EnqueueContext,
  job: J,
  payload: PayloadInput<J>,
  meta: EnqueueMeta,
): Promise<Enqueued> {
  const parsed = job.payload.parse(payload);
  const queue = ctx.queues[job.queue];
  const data: JobData = { payload: parsed, meta: { actor: meta.actor, requestId: meta.requestId } };

  if (!meta.idempotency) {
    const id = `${job.queue}-${randomUUID().replaceAll('-', '')}`;
    const added = await queue.add(job.name, data, { ...job.options, jobId: id });
    return {
      id,
      queue: job.queue,
      name: job.name,
      state: added.opts.delay ? 'delayed' : 'waiting',
      replayed: false,
    };
  }

  const { key, target } = meta.idempotency;
  const id = `${job.queue}-${sha256(`${meta.actorId}\n${target}\n${key}`).slice(0, 32)}`;
  const requestHash = sha256(`${job.name}\n${stringify(parsed)}`);
  data.meta.requestHash = requestHash;
  // SET NX GET: claims the key for this request hash, or tells us which request claimed it first.
  const previous = (await ctx.redis.call(
    'SET',
    `${ctx.prefix}:idempotency:${id}`,
    requestHash,
    'EX',
    String(ctx.idempotencyTtlSeconds),
    'NX',
    'GET',
  )) as string | null;
  if (previous !== null && previous !== requestHash) throw new IdempotencyKeyReusedError(id);
  // Adding is idempotent by job id: if the first request's job exists, BullMQ keeps it untouched.
  const added = await queue.add(job.name, data, { ...job.options, jobId: id });
  const state = previous === null ? 'waiting' : await added.getState();
  return { id, queue: job.queue, name: job.name, state, replayed: previous !== null };
}
