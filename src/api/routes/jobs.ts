import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { queueReadScopes } from '../../queues/job.js';
import { getJobStatus } from '../../queues/job-status.js';
import { queueOfJobId } from '../../queues/queues.js';
import { allows, principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { isRedisUnavailable, queueUnavailable } from '../submit-job.js';

const jobStatusSchema = z.object({
  id: z.string(),
  queue: z.string(),
  name: z.string(),
  state: z.enum(['waiting', 'delayed', 'active', 'completed', 'failed']),
  attemptsMade: z.number().int(),
  progress: z.unknown(),
  result: z.unknown(),
  error: z
    .object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()) })
    .nullable(),
  createdAt: z.string(),
  processedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});

export function registerJobRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/api/jobs/:id',
    {
      config: { scope: 'pms' },
      schema: {
        tags: ['jobs'],
        summary:
          'State of a job: attempts, progress, result or error (kept 7 days after it finishes); webhooks and maintenance jobs need an admin key (404 otherwise)',
        params: z.object({ id: z.string().min(1).max(200) }),
        response: { 200: jobStatusSchema },
      },
    },
    async (request, reply) => {
      const queue = queueOfJobId(request.params.id);
      // A job of a queue this key may not read is answered like one that does not exist, before
      // any lookup: the answer (and its timing) does not tell whether it exists.
      const readable = queue !== undefined && allows(principalOf(request).scopes, queueReadScopes[queue]);
      let status: Awaited<ReturnType<typeof getJobStatus>>;
      try {
        status = readable ? await getJobStatus(deps.queues, request.params.id) : undefined;
      } catch (error) {
        if (!isRedisUnavailable(error, deps.redis)) throw error;
        request.log.warn({ err: error }, 'job state cannot be read: Redis is unavailable');
        throw queueUnavailable('The job queue is unavailable; the job state cannot be read now. Retry later');
      }
      if (!status) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Job ${request.params.id} does not exist`),
        );
      }
      return status;
    },
  );
}
