import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { RedisClient } from '../connections.js';
import { HttpProblem } from '../errors/http-problem.js';
import { IdempotencyKeyReusedError } from '../errors/idempotency-key-reused-error.js';
import { type EnqueueContext, type EnqueueMeta, enqueue } from '../queues/enqueue.js';
import type { AnyJob, PayloadInput } from '../queues/job.js';
import { getJobStatus, type JobStatus } from '../queues/job-status.js';
import { principalOf } from './auth.js';
import type { ApiDeps } from './deps.js';
import { problemFromFailure, sendProblem } from './problems.js';

/** Body of every 202: a handle to poll at `Location`. */
export const jobHandleSchema = z
  .object({
    id: z.string(),
    queue: z.string(),
    name: z.string(),
    state: z.string(),
  })
  .meta({ id: 'JobHandle', description: 'A queued job: poll it at /api/jobs/{id} (the Location header)' });

const idempotencyKeySchema = z.string().min(1).max(255);
const maxWaitSeconds = 30;

/**
 * Whether an enqueue failed because Redis is unreachable or refused the write (connection lost,
 * offline queue off, retries exhausted, a Redis error reply such as OOM or READONLY): the only
 * failures that are a 503 (retry later), not a bug of ours.
 */
export function isRedisUnavailable(error: unknown, redis: RedisClient): boolean {
  if (redis.status !== 'ready') return true;
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code ?? '';
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    error.name === 'ReplyError' ||
    error.name === 'ClusterAllFailedError' ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTCONN'].includes(code) ||
    /Connection is closed|Stream isn't writeable|enableOfflineQueue|Command timed out/.test(error.message) ||
    // A Redis Cluster in a failover: the slot's master gone, redirections exhausted, no node reachable.
    /Too many Cluster redirections|None of startup nodes is available|Node is disconnected|Cluster is disconnect/.test(
      error.message,
    )
  );
}

/** `Prefer: wait=N` (RFC 7240), clamped to 1-30 s; other preferences are ignored. */
export function preferredWaitSeconds(prefer: string | undefined): number | undefined {
  const match = prefer?.match(/(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i);
  if (!match) return undefined;
  return Math.min(Math.max(Number(match[1]), 1), maxWaitSeconds);
}

/**
 * Waits until the job finishes or `ms` pass. It watches for the finished signal *before* reading
 * the state (so no signal slips in between), re-reads the state after every signal, and polls
 * with backoff in case a signal was lost: it can neither hang nor miss a completion.
 */
async function waitForJob(deps: ApiDeps, id: string, ms: number): Promise<JobStatus | undefined> {
  const deadline = Date.now() + ms;
  const watch = deps.finished.watch(id);
  try {
    let pollMs = 50;
    for (;;) {
      const status = await getJobStatus(deps.queues, id);
      const remaining = deadline - Date.now();
      if (!status || status.state === 'completed' || status.state === 'failed' || remaining <= 0)
        return status;
      await watch.next(Math.min(pollMs, remaining));
      pollMs = Math.min(pollMs * 2, 1000);
    }
  } finally {
    watch.stop();
  }
}

export const enqueueContext = (deps: ApiDeps): EnqueueContext => ({
  queues: deps.queues,
  redis: deps.redis,
  prefix: deps.config.QUEUE_PREFIX,
  idempotencyTtlSeconds: deps.config.IDEMPOTENCY_TTL_SECONDS,
});

/**
 * What an enqueue failure tells the caller. A payload schema that refused what the route's schema
 * let through is a 400 (never queued). Redis being away is a 503: the producer connection fails
 * fast, and the caller is told to retry (`how` makes it safe) instead of the request being held
 * open. Anything else is our bug and is rethrown: a 500 with the request id, logged by the error
 * handler.
 */
function enqueueFailure(deps: ApiDeps, request: FastifyRequest, error: unknown, how: string): unknown {
  if (error instanceof z.ZodError) {
    return new HttpProblem(
      400,
      'validation_failed',
      `The request has ${error.issues.length} invalid field(s)`,
      {
        errors: error.issues.map((issue) => ({
          in: 'body',
          path: issue.path.join('.'),
          message: issue.message,
        })),
      },
    );
  }
  if (!isRedisUnavailable(error, deps.redis)) return error;
  request.log.error({ err: error }, 'could not enqueue the job');
  // A command that timed out on a stalled link may still reach Redis once the link moves again.
  const unsure = error instanceof Error && /Command timed out/.test(error.message);
  return queueUnavailable(
    unsure
      ? `The job queue did not answer in time; the job may or may not have been accepted. Retry later (${how}: the same job is found again, never queued twice)`
      : `The job queue is unavailable; nothing was accepted. Retry later (${how})`,
  );
}

/** 503 with Retry-After: the job queue (RedisClient) cannot be reached; the request may be repeated as is. */
export function queueUnavailable(detail: string): HttpProblem {
  return new HttpProblem(503, 'service_unavailable', detail, {}, { 'Retry-After': '5' });
}

/**
 * The one way a route turns a mutation into a job: honours Idempotency-Key and Prefer: wait, and
 * answers 202 with the job handle, or (waiting) the job's result or its error as a problem.
 */
export async function submitJob<J extends AnyJob>(
  deps: ApiDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  job: J,
  payload: PayloadInput<J>,
  options: { successStatus?: 200 | 201; dedupeKey?: string } = {},
): Promise<void> {
  const idempotencyHeader = request.headers['idempotency-key'];
  let idempotency: EnqueueMeta['idempotency'];
  if (idempotencyHeader !== undefined) {
    const key = idempotencyKeySchema.safeParse(idempotencyHeader);
    if (!key.success) {
      throw new HttpProblem(400, 'validation_failed', 'The headers have 1 invalid field(s)', {
        errors: [
          { in: 'headers', path: 'idempotency-key', message: 'must be a single value of 1-255 characters' },
        ],
      });
    }
    idempotency = { key: key.data, target: `${request.method} ${request.routeOptions.url ?? request.url}` };
  }
  const principal = principalOf(request);
  let enqueued: Awaited<ReturnType<typeof enqueue>>;
  try {
    enqueued = await enqueue(enqueueContext(deps), job, payload, {
      actor: principal.name,
      actorId: principal.id,
      requestId: request.id,
      idempotency,
      dedupeKey: options.dedupeKey,
    });
  } catch (error) {
    if (error instanceof IdempotencyKeyReusedError) {
      throw new HttpProblem(422, 'idempotency_key_reused', error.message, { jobId: error.jobId });
    }
    throw enqueueFailure(deps, request, error, 'with the same Idempotency-Key');
  }

  const location = `/api/jobs/${enqueued.id}`;
  reply.header('Location', location);
  const prefer = request.headers.prefer;
  const waitSeconds = preferredWaitSeconds(Array.isArray(prefer) ? prefer.join(', ') : prefer);
  // Beyond WAIT_MAX_CONCURRENT waiting requests, the preference is not applied: the 202 at once.
  const releaseWait = waitSeconds === undefined ? undefined : deps.limits.waits.tryAcquire();
  if (waitSeconds !== undefined && releaseWait) {
    // The job is queued: if Redis goes away while we wait, the answer is its 202 handle (the
    // preference not applied), never an error: the request was accepted.
    const status = await waitForJob(deps, enqueued.id, waitSeconds * 1000)
      .catch((error: unknown) => {
        if (!isRedisUnavailable(error, deps.redis)) throw error;
        request.log.warn({ err: error, jobId: enqueued.id }, 'job queued, but its state cannot be read: 202');
        return undefined;
      })
      .finally(releaseWait);
    if (status?.state === 'completed' || status?.state === 'failed') {
      reply.header('Preference-Applied', `wait=${waitSeconds}`);
      if (status.state === 'completed') {
        reply.code(options.successStatus ?? 200).send(status.result);
      } else {
        sendProblem(reply, request, { ...problemFromFailure(status.error!), jobId: status.id });
      }
      return sent(reply);
    }
    if (status) enqueued.state = status.state;
  }
  reply
    .code(202)
    .send({ id: enqueued.id, queue: enqueued.queue, name: enqueued.name, state: enqueued.state });
  return sent(reply);
}

/**
 * Resolves once the answer is sent. A handler that resolves before (with nothing) while an async
 * onSend hook still runs (the commit position's, src/api/replica-reads.ts) makes Fastify send a
 * second, empty answer.
 */
async function sent(reply: FastifyReply): Promise<void> {
  await reply;
}

/**
 * The other way a route queues jobs: when the route names them itself instead of deriving their
 * ids from an Idempotency-Key (an inbound webhook by its webhook-id and dedupe claim; a manual
 * delivery retry, whose row names its job and is reset in the transaction that queues it; a
 * supplier change, whose rules' checks are queued before it commits). `add` queues them and the
 * route sends its own answer. A failure answers as `submitJob`'s does: 503 with Retry-After while
 * Redis is away (`how` says what makes the retry safe), 400 for a payload its job's schema refuses;
 * a problem the route raised passes through, anything else is rethrown (500). Never only logged.
 */
export async function queueNamedJobs<T>(
  deps: ApiDeps,
  request: FastifyRequest,
  how: string,
  add: () => Promise<T>,
): Promise<T> {
  try {
    return await add();
  } catch (error) {
    if (error instanceof HttpProblem) throw error;
    throw enqueueFailure(deps, request, error, how);
  }
}
