import type { JobsOptions } from 'bullmq';
import type { z } from 'zod';
import type { Scope } from '../db/api-keys.js';
import type { JobFailure } from '../errors/domain-error.js';

export const queueNames = [
  'products',
  'maintenance',
  'inventory',
  'images',
  'webhooks',
  'orders',
  'inbound',
  'reorder',
] as const;
export type QueueName = (typeof queueNames)[number];

/**
 * The key scope that may read a queue's jobs (`GET /api/jobs/:id`; `admin` keys read every queue).
 * The PMS's own work is `pms`. Webhook deliveries and maintenance are operators' business, and
 * their job ids derive from ids a pms key sees in the feed, so they are `admin` only; to any other
 * key they do not exist (404).
 */
export const queueReadScopes = {
  products: 'pms',
  maintenance: 'admin',
  inventory: 'pms',
  images: 'pms',
  webhooks: 'admin',
  orders: 'pms',
  inbound: 'pms',
  reorder: 'pms',
} as const satisfies Record<QueueName, Scope>;

/**
 * One job, declared once and used by both sides: the API enqueues it, the worker parses the same
 * payload schema again before running it (the job may have been queued by older code).
 * `Result` exists only in the type.
 */
export interface JobDefinition<
  Name extends string = string,
  Queue extends QueueName = QueueName,
  Payload extends z.ZodType = z.ZodType,
  Result = unknown,
> {
  readonly name: Name;
  readonly queue: Queue;
  readonly payload: Payload;
  /** Overrides of the queue's default options (attempts, backoff, retention). */
  readonly options?: JobsOptions;
  /** Phantom field: carries the result type for inference; never set. */
  readonly resultType?: Result;
}

/** `defineJob<Result>()({ name, queue, payload })`: curried so the result type is explicit while the rest is inferred. */
export function defineJob<Result>() {
  return <const Name extends string, Queue extends QueueName, Payload extends z.ZodType>(definition: {
    name: Name;
    queue: Queue;
    payload: Payload;
    options?: JobsOptions;
  }): JobDefinition<Name, Queue, Payload, Result> => definition;
}

// biome-ignore lint/suspicious/noExplicitAny: the widest job type, for constraints only
export type AnyJob = JobDefinition<string, QueueName, z.ZodType, any>;
export type PayloadOf<J extends AnyJob> = z.output<J['payload']>;
export type PayloadInput<J extends AnyJob> = z.input<J['payload']>;
export type ResultOf<J extends AnyJob> =
  J extends JobDefinition<string, QueueName, z.ZodType, infer R> ? R : never;

/** Who asked for a job and how; travels with the job into the worker's log lines and the database. */
export interface JobMeta {
  /** API key name of the caller, or `system` for scheduled work. */
  actor: string;
  requestId?: string;
  /** Hash of the canonical payload, kept to answer a reused Idempotency-Key. */
  requestHash?: string;
}

/** What a job holds in Redis. */
export interface JobData<Payload = unknown> {
  payload: Payload;
  meta: JobMeta;
  /**
   * Compatibility: where workers of earlier releases wrote a domain failure, in a write of its own
   * before failing the job. Workers now leave it in the job's `failedReason` (`failedReasonOf`).
   */
  failure?: JobFailure;
}

/** One BullMQ job scheduler: repeatable work, run by the processes that run its queue. */
export interface Scheduler {
  queue: QueueName;
  id: string;
  every: number;
  name: string;
  data: JobData;
  opts: JobsOptions;
  /** Also queued once when a worker of the queue starts: the first scheduled run may be an interval away. */
  runAtStart?: boolean;
}

/** A scheduler of `job`, declared in the job's queue file; it runs as the system actor. */
export function defineScheduler<J extends AnyJob>(
  job: J,
  scheduler: {
    id: string;
    every: number;
    payload: PayloadInput<J>;
    /** Overrides of the job's options for the scheduled runs. */
    options?: JobsOptions;
    runAtStart?: boolean;
  },
): Scheduler {
  return {
    queue: job.queue,
    id: scheduler.id,
    every: scheduler.every,
    name: job.name,
    data: { payload: scheduler.payload, meta: { actor: 'system' } },
    opts: { ...job.options, ...scheduler.options },
    runAtStart: scheduler.runAtStart,
  };
}

/** Whether this run of a job is its last attempt (BullMQ counts `attemptsMade` after the run). */
export const isLastAttempt = (job: { attemptsMade: number; opts: { attempts?: number } }) =>
  job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
