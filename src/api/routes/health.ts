import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';

const checkTimeoutMs = 2000;

async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function registerHealthRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get(
    '/healthz',
    { config: { scope: 'public' }, schema: { tags: ['health'], summary: 'The process is alive' } },
    async () => ({
      status: 'ok',
    }),
  );

  app.get(
    '/readyz',
    {
      config: { scope: 'public' },
      schema: {
        tags: ['health'],
        summary: 'PostgreSQL and Redis are reachable (503 names the one that is not)',
      },
    },
    async (request, reply) => {
      const [postgres, redis] = await Promise.allSettled([
        within(checkTimeoutMs, deps.db.raw('select 1')),
        within(checkTimeoutMs, deps.redis.ping()),
      ]);
      const down = [
        ...(postgres.status === 'rejected' ? ['PostgreSQL'] : []),
        ...(redis.status === 'rejected' ? ['Redis'] : []),
      ];
      if (down.length === 0) return { status: 'ready', postgres: 'ok', redis: 'ok' };
      return sendProblem(
        reply,
        request,
        problem(503, 'service_unavailable', `Not reachable: ${down.join(' and ')}`, { unavailable: down }),
      );
    },
  );
}
