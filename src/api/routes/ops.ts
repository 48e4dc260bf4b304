import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { cacheNames } from '../../cache/read-cache.js';
import { listAlerts } from '../../ops/alerts.js';
import { alertAnswerSchema, alertRules } from '../../schemas/alerts.js';
import { cursors } from '../../schemas/fields.js';
import type { ApiDeps } from '../deps.js';

const countsSchema = z.object({
  hits: z.number().int(),
  misses: z.number().int(),
  staleServes: z.number().int(),
  loads: z.number().int(),
  invalidatedOnRead: z.number().int(),
  bypassed: z.number().int(),
  hitRatio: z.number().nullable(),
});

/** Operators' views: the read cache's analytics and the alerts the platform raised (monitor scope: read-only). */
export function registerOpsRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['operations'];

  app.get(
    '/api/ops/cache',
    {
      config: { scope: 'monitor' },
      schema: {
        tags,
        summary: "This process's read cache: counts per cache since start, settings, the most-read skus",
        querystring: z.object({ top: z.coerce.number().int().min(0).max(1000).default(20) }),
        response: {
          200: z.object({
            enabled: z.boolean(),
            caches: z.object(
              Object.fromEntries(cacheNames.map((n) => [n, countsSchema])) as Record<
                (typeof cacheNames)[number],
                typeof countsSchema
              >,
            ),
            settings: z.object({
              ttlSeconds: z.number(),
              listTtlSeconds: z.number(),
              graceSeconds: z.number(),
              localMaxItems: z.number().int(),
              localMaxBytes: z.number().int(),
              warmTop: z.number().int(),
              warmIntervalSeconds: z.number(),
              separateRedis: z.boolean(),
            }),
            topReads: z.array(z.object({ sku: z.string(), reads: z.number() })),
          }),
        },
      },
    },
    async (request) => {
      const { config, cache } = deps;
      const counts = cache.counts();
      return {
        enabled: cache.enabled,
        caches: Object.fromEntries(
          cacheNames.map((name) => {
            const c = counts[name];
            const served = c.hits + c.staleServes;
            const reads = served + c.misses;
            return [name, { ...c, hitRatio: reads === 0 ? null : served / reads }];
          }),
        ) as Record<(typeof cacheNames)[number], z.infer<typeof countsSchema>>,
        settings: {
          ttlSeconds: config.CACHE_TTL / 1000,
          listTtlSeconds: config.CACHE_LIST_TTL / 1000,
          graceSeconds: config.CACHE_GRACE / 1000,
          localMaxItems: config.CACHE_L1_MAX_ITEMS,
          localMaxBytes: config.CACHE_L1_MAX_BYTES,
          warmTop: config.CACHE_WARM_TOP,
          warmIntervalSeconds: config.CACHE_WARM_INTERVAL / 1000,
          separateRedis: config.cacheRedisUrl !== config.REDIS_URL,
        },
        topReads: await cache.topReads(request.query.top),
      };
    },
  );

  app.get(
    '/api/ops/alerts',
    {
      config: { scope: 'monitor' },
      schema: {
        tags,
        summary: 'Alerts the platform raised about itself, newest first (keyset pagination)',
        querystring: z.object({
          state: z.enum(['open', 'resolved']).optional(),
          rule: z.enum(alertRules).optional(),
          limit: z.coerce.number().int().min(1).max(200).default(50),
          cursor: cursors.alert.schema.optional(),
        }),
        response: {
          200: z.object({
            items: z.array(alertAnswerSchema),
            nextCursor: z.string().nullable(),
          }),
        },
      },
    },
    (request) => listAlerts(deps.db, request.query),
  );
}
