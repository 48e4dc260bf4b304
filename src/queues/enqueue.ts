import { createHash, randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { stringify } from 'safe-stable-stringify';
import type { RedisClient } from '../connections.js';
import { IdempotencyKeyReusedError } from '../errors/idempotency-key-reused-error.js';
import type { AnyJob, JobData, PayloadInput, QueueName } from './job.js';
import type { Queues } from './queues.js';

export interface EnqueueContext {
  queues: Queues;
  redis: RedisClient;
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
  /**
   * Content key of the job (any text, e.g. an image upload's image id and content hash): the same
   * key gives the same job, whoever asks. A failed job under the key is replaced, so sending the
   * same content again retries it.
   */
  dedupeKey?: string;
}

export interface Enqueued {
  id: string;
  queue: QueueName;
  name: string;
  state: string;
  /** True when an earlier request with the same Idempotency-Key created the job. */
  replayed: boolean;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('base64url');

/**
 * The id of every job the API queues is `<queue>-<32 characters>` (jobs the workers queue
 * themselves, such as deliveries and reorder checks, name theirs): under 50, far below the router's 100-character
 * parameter limit, so every route and log line that carries one takes it; `queueOfJobId` finds the
 * queue from the prefix. 32 base64url characters are 192 bits of a SHA-256: two keys never meet.
 */
export const jobIdOf = (queue: QueueName, key: string) => `${queue}-${sha256(key).slice(0, 32)}`;

/**
 * Validates the payload against the job's schema and adds the job.
 *
 * With an idempotency key, the key is claimed in Redis for (caller, target, key) with the hash of
 * the request, and the job id is derived from (caller, target, key, request hash). While the claim
 * lives, the same request gets the same job back and another payload under the key is refused.
 * After it expires, the same request still finds its job (the id is the same), and another payload
 * gets a job of its own: a key can never hand back a job made from a different request.
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

  const keyedId = meta.dedupeKey === undefined ? undefined : dedupedJobId(job.queue, meta.dedupeKey);
  if (!meta.idempotency) {
    const id = keyedId ?? `${job.queue}-${randomUUID().replaceAll('-', '')}`;
    if (keyedId) await removeIfFailed(queue, keyedId);
    const added = await queue.add(job.name, data, { ...job.options, jobId: id });
    return {
      id,
      queue: job.queue,
      name: job.name,
      state: keyedId ? await added.getState() : added.opts.delay ? 'delayed' : 'waiting',
      replayed: false,
    };
  }

  const { key, target } = meta.idempotency;
  const claim = `${meta.actorId}\n${target}\n${key}`;
  const requestHash = sha256(`${job.name}\n${stringify(parsed)}`);
  const id = keyedId ?? jobIdOf(job.queue, `${claim}\n${requestHash}`);
  data.meta.requestHash = requestHash;
  // SET NX GET: claims the key for this request (hash and job id), or tells us which request
  // claimed it first. Claims written before job ids bound the hash hold the hash alone.
  const previous = (await ctx.redis.call(
    'SET',
    `${ctx.prefix}:idempotency:${jobIdOf(job.queue, claim)}`,
    `${requestHash} ${id}`,
    'EX',
    String(ctx.idempotencyTtlSeconds),
    'NX',
    'GET',
  )) as string | null;
  const [previousHash, previousId] = previous?.split(' ') ?? [];
  if (previous !== null && previousHash !== requestHash)
    throw new IdempotencyKeyReusedError(previousId ?? id);
  if (keyedId && previous === null) await removeIfFailed(queue, keyedId);
  // Adding is idempotent by job id: if the first request's job exists, BullMQ keeps it untouched.
  const added = await queue.add(job.name, data, { ...job.options, jobId: id });
  const state = previous === null && !keyedId ? 'waiting' : await added.getState();
  return { id, queue: job.queue, name: job.name, state, replayed: previous !== null };
}

/** The job id `enqueue` gives a job added with this `dedupeKey`. */
export function dedupedJobId(queue: QueueName, key: string): string {
  if (key.length === 0) throw new Error('dedupeKey must not be empty');
  return jobIdOf(queue, `dedupe\n${key}`);
}

/** A failed job would keep its id (and so its content) blocked until retention removes it. */
async function removeIfFailed(queue: Queue, id: string): Promise<void> {
  const existing = await queue.getJob(id);
  if (existing && (await existing.isFailed())) await existing.remove();
}
