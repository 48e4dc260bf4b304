import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RateLimiterRes } from 'rate-limiter-flexible';
import { z } from 'zod';
import { findInboundDelivery } from '../../domain/inbound.js';
import { type FieldError, HttpProblem } from '../../errors/http-problem.js';
import { SignatureError } from '../../errors/signature-error.js';
import { dedupedJobId, enqueue } from '../../queues/enqueue.js';
import { inboundJobs } from '../../queues/inbound.js';
import { instantSchema } from '../../schemas/fields.js';
import {
  type InboundEndpoint,
  type InboundEvent,
  type InboundType,
  inboundEndpoints,
  inboundTypes,
  typesOf,
} from '../../schemas/inbound.js';
import { verifySignature } from '../../webhooks/signing.js';
import type { ApiDeps } from '../deps.js';
import { parseJsonBody } from '../json-body.js';
import { countFailure, pastLimit, sendRateLimited } from '../rate-limits.js';
import { enqueueContext, jobHandleSchema, queueNamedJobs } from '../submit-job.js';

const envelopeSchema = z.object({
  type: z.string().min(1).max(100),
  timestamp: instantSchema,
  data: z.record(z.string(), z.unknown()),
});

const signatureHeaders = z.object({
  'webhook-id': z
    .string()
    .describe('unique per event; a redelivery repeats it')
    .meta({ example: 'msg_2Y9q7' }),
  'webhook-timestamp': z.string().describe('Unix seconds; refused when more than 5 minutes off'),
  'webhook-signature': z
    .string()
    .describe('v1,<base64 HMAC-SHA256 of "id.timestamp.body">, several space-separated while rotating'),
});

const handleSchema = jobHandleSchema.extend({
  duplicate: z.boolean().describe('true: this webhook-id was received before; no second job'),
});

const examples: Record<InboundEndpoint, Record<string, unknown>> = {
  product: {
    type: 'product.upserted',
    timestamp: '2026-12-02T10:00:00Z',
    data: {
      sku: 'TSHIRT-RED-M',
      name: 'T-shirt red M',
      price: { amount: 1999, currency: 'EUR' },
      version: 11,
    },
  },
  inventory: {
    type: 'inventory.adjusted',
    timestamp: '2026-12-02T10:00:00Z',
    data: { movements: [{ sku: 'TSHIRT-RED-M', location: 'default', delta: 5, reason: 'received' }] },
  },
  order: {
    type: 'order.cancelled',
    timestamp: '2026-12-02T10:00:00Z',
    data: { orderNumber: 'SO-1001' },
  },
};

const fieldErrors = (error: z.ZodError, prefix: string[] = []): FieldError[] =>
  error.issues.map((i) => ({ in: 'body', path: [...prefix, ...i.path].join('.'), message: i.message }));

/** The job payload of a verified, well-formed delivery; 422 for an unknown type or data that fails its schema. */
function parseDelivery(
  endpoint: InboundEndpoint,
  raw: string,
  webhookId: string,
  settings: { holdSeconds: number; maxDepth: number },
) {
  const body = parseJsonBody(raw, settings.maxDepth);
  const envelope = envelopeSchema.safeParse(body);
  if (!envelope.success) {
    throw new HttpProblem(
      422,
      'invalid_webhook_payload',
      'The webhook body is not { type, timestamp, data }',
      {
        errors: fieldErrors(envelope.error),
      },
    );
  }
  const accepted = typesOf(endpoint);
  const type = envelope.data.type as InboundType;
  if (!accepted.includes(type)) {
    throw new HttpProblem(
      422,
      'unknown_webhook_type',
      `This endpoint takes ${accepted.join(', ')}, not ${envelope.data.type}`,
      { details: { type: envelope.data.type, accepted } },
    );
  }
  const data = inboundTypes[type].data.safeParse(envelope.data.data);
  if (!data.success) {
    const errors = fieldErrors(data.error, ['data']);
    throw new HttpProblem(
      422,
      'invalid_webhook_payload',
      `The ${type} data has ${errors.length} invalid field(s)`,
      {
        errors,
      },
    );
  }
  const filled =
    type === 'order.created' ? { holdSeconds: settings.holdSeconds, ...(data.data as object) } : data.data;
  return { webhookId, timestamp: envelope.data.timestamp, type, data: filled } as InboundEvent;
}

/**
 * Signed inbound webhooks from the PMS. The signature is the credential (no API key), and it
 * covers the exact bytes: this encapsulated plugin keeps the JSON body as its raw bytes for
 * these routes only, and validates it by hand after the signature. What an unsigned caller can
 * make us do is bounded: a body over INBOUND_BODY_LIMIT_BYTES is refused (413) before it is read,
 * an address past INBOUND_SIGNATURE_FAILURES_PER_MINUTE bad signatures is refused (429) before
 * its body is read, and a signature costs one native HMAC per configured secret.
 */
export async function registerInboundRoutes(root: FastifyInstance, deps: ApiDeps): Promise<void> {
  const failures = deps.limits.rates.signatureFailures;
  const refuseFlooding = async (request: FastifyRequest, reply: FastifyReply) => {
    const over = await pastLimit(failures, request.ip);
    if (over) return tooManyFailures(request, reply, over);
  };
  await root.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) =>
      done(null, body),
    );
    // The route schemas document the body and headers; they are checked in order (signature first).
    scope.setValidatorCompiler(() => (value) => ({ value }));
    for (const endpoint of inboundEndpoints) {
      const types = typesOf(endpoint);
      scope.post(
        `/api/pms/webhook/${endpoint}`,
        {
          config: { scope: 'public' },
          bodyLimit: deps.config.INBOUND_BODY_LIMIT_BYTES,
          onRequest: refuseFlooding,
          schema: {
            tags: ['inbound webhooks'],
            summary: `Signed PMS webhook (${types.join(', ')}): no API key, the Standard Webhooks signature is the credential`,
            description:
              'Verified over the raw body against INBOUND_WEBHOOK_SECRET. 401: missing or bad signature, or a ' +
              'timestamp more than 5 minutes off. 202: a job (queue inbound). 200: this webhook-id was received ' +
              'before (the first delivery’s job; nothing is applied twice). 422: unknown type or invalid data. ' +
              '413: a body over INBOUND_BODY_LIMIT_BYTES. 429: too many bad signatures from this address ' +
              '(INBOUND_SIGNATURE_FAILURES_PER_MINUTE), with Retry-After.',
            security: [],
            headers: signatureHeaders,
            body: z
              .object({
                type: z.enum(types as [InboundType, ...InboundType[]]),
                timestamp: z.string().describe('ISO 8601: when the change happened in the PMS'),
                data: z.union(types.map((t): z.ZodType => inboundTypes[t].data)),
              })
              .meta({ example: examples[endpoint] }),
            response: { 202: handleSchema, 200: handleSchema },
          },
        },
        (request, reply) => receive(deps, endpoint, request, reply),
      );
    }
  });
}

const tooManyFailures = (request: FastifyRequest, reply: FastifyReply, res: RateLimiterRes) =>
  sendRateLimited(
    request,
    reply,
    res,
    'too_many_signature_failures',
    'Too many webhooks with a bad signature from this address in a minute; retry after the Retry-After seconds',
  );

async function receive(
  deps: ApiDeps,
  endpoint: InboundEndpoint,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  let webhookId: string;
  try {
    webhookId = verifySignature(deps.config.INBOUND_WEBHOOK_SECRET, body, request.headers);
  } catch (error) {
    if (!(error instanceof SignatureError)) throw error;
    // Counted atomically: however many arrive at once, at most the limit are answered 401.
    const over = await countFailure(deps.limits.rates.signatureFailures, request.ip);
    if (over) return tooManyFailures(request, reply, over);
    throw new HttpProblem(401, 'invalid_signature', error.message);
  }
  const payload = parseDelivery(endpoint, body.toString('utf8'), webhookId, {
    holdSeconds: deps.config.ORDER_HOLD_SECONDS,
    maxDepth: deps.config.JSON_MAX_DEPTH,
  });

  const key = createHash('sha256').update(webhookId).digest('base64url').slice(0, 32);
  const job = inboundJobs.apply;
  const jobId = dedupedJobId(job.queue, key);
  const answer = (status: 200 | 202, id: string, state: string) =>
    reply
      .code(status)
      .header('Location', `/api/jobs/${id}`)
      .send({ id, queue: job.queue, name: job.name, state, duplicate: status === 200 });

  // Applied before (the record lives in Postgres, so this holds even after Redis lost the job).
  const applied = await findInboundDelivery(deps.db, webhookId);
  if (applied) return answer(200, applied.jobId, 'completed');
  const { status, id, state } = await queueNamedJobs(
    deps,
    request,
    'deliver it again with the same webhook-id',
    async () => {
      const claimed = await deps.redis.set(
        `${deps.config.QUEUE_PREFIX}:inbound:${key}`,
        webhookId,
        'EX',
        deps.config.JOB_RETENTION_SECONDS,
        'NX',
      );
      if (claimed === null) {
        const existing = await deps.queues.inbound.getJob(jobId);
        if (existing) return { status: 200 as const, id: jobId, state: await existing.getState() };
      }
      const enqueued = await enqueue(enqueueContext(deps), job, payload, {
        actor: 'pms-webhook',
        actorId: 'inbound',
        requestId: request.id,
        dedupeKey: key,
      });
      return { status: 202 as const, id: enqueued.id, state: enqueued.state };
    },
  );
  return answer(status, id, state);
}
