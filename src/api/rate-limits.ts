import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  BurstyRateLimiter,
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import { problem, sendProblem } from './problems.js';

/**
 * Request-rate limits, counted in Redis so every web process shares them (rate-limiter-flexible,
 * fixed windows): per API key on /api/*, and per client IP on failed authentication (API keys)
 * and failed inbound webhook signatures. When Redis does not answer, each process counts on its
 * own in memory (the insurance limiter) rather than refusing every request.
 */
export interface RateLimits {
  /** Undefined when RATE_LIMIT_PER_SECOND is 0 (benchmarks). */
  perKey: BurstyRateLimiter | undefined;
  authFailures: RateLimiterRedis;
  signatureFailures: RateLimiterRedis;
}

/** The reserve of a burst refills over this window. */
const burstWindowSeconds = 10;

type LimitSettings = Pick<
  Config,
  | 'QUEUE_PREFIX'
  | 'RATE_LIMIT_PER_SECOND'
  | 'RATE_LIMIT_BURST'
  | 'AUTH_FAILURES_PER_MINUTE'
  | 'INBOUND_SIGNATURE_FAILURES_PER_MINUTE'
>;

function redisLimiter(redis: RedisClient, keyPrefix: string, points: number, duration: number) {
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration,
    // A key far over its limit is refused from memory until its window ends: a flood costs no Redis.
    inMemoryBlockOnConsumed: points * 2,
    insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration }),
  });
}

export function createRateLimits(redis: RedisClient, config: LimitSettings): RateLimits {
  const prefix = `${config.QUEUE_PREFIX}:rate`;
  const perSecond = config.RATE_LIMIT_PER_SECOND;
  const reserve = config.RATE_LIMIT_BURST - perSecond;
  return {
    perKey:
      perSecond === 0
        ? undefined
        : new BurstyRateLimiter(
            redisLimiter(redis, `${prefix}:key`, perSecond, 1),
            redisLimiter(redis, `${prefix}:key-burst`, Math.max(reserve, 1), burstWindowSeconds),
          ),
    authFailures: redisLimiter(redis, `${prefix}:auth-failures`, config.AUTH_FAILURES_PER_MINUTE, 60),
    signatureFailures: redisLimiter(
      redis,
      `${prefix}:signature-failures`,
      config.INBOUND_SIGNATURE_FAILURES_PER_MINUTE,
      60,
    ),
  };
}

/**
 * Counts one failure (or one attempt that may fail) of `address`, atomically in Redis: the answer
 * says whether it is within the limit, so however many arrive at once, at most `points` of them
 * are let through per window. The RateLimiterRes of a refusal, or undefined when within the limit
 * (and when the count itself failed: counting never fails a request).
 */
export async function countFailure(
  limiter: RateLimiterAbstract,
  address: string,
): Promise<RateLimiterRes | undefined> {
  try {
    await limiter.consume(address);
    return undefined;
  } catch (error) {
    return error instanceof RateLimiterRes ? error : undefined;
  }
}

/** The RateLimiterRes of an address already past its limit (nothing counted), else undefined. */
export async function pastLimit(
  limiter: RateLimiterAbstract,
  address: string,
): Promise<RateLimiterRes | undefined> {
  const seen = await limiter.get(address).catch(() => null);
  return seen && seen.consumedPoints >= limiter.points ? seen : undefined;
}

/** Seconds until the limit lets a request through again, as Retry-After carries it. */
export const retryAfterSeconds = (res: RateLimiterRes) =>
  String(Math.max(1, Math.ceil(res.msBeforeNext / 1000)));

export function sendRateLimited(
  request: FastifyRequest,
  reply: FastifyReply,
  res: RateLimiterRes,
  code: 'rate_limited' | 'too_many_auth_failures' | 'too_many_signature_failures',
  detail: string,
): FastifyReply {
  return sendProblem(
    reply.header('Retry-After', retryAfterSeconds(res)),
    request,
    problem(429, code, detail, { details: { retryAfterSeconds: Number(retryAfterSeconds(res)) } }),
  );
}

/** The per-key limit on /api/*: runs after authentication, so it counts the key, not the address. */
export function registerRateLimit(app: FastifyInstance, limits: RateLimits, perSecond: number): void {
  const limiter = limits.perKey;
  if (!limiter) return;
  app.addHook('onRequest', async (request, reply) => {
    const principal = request.principal;
    if (!principal || !(request.routeOptions.url ?? '').startsWith('/api/')) return;
    try {
      await limiter.consume(principal.id);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      return sendRateLimited(
        request,
        reply,
        error,
        'rate_limited',
        `This API key sent more than ${perSecond} requests a second (and its burst reserve); retry after the Retry-After seconds`,
      );
    }
  });
}
