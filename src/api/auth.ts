import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import type { Knex } from 'knex';
import type { RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisClient } from '../connections.js';
import { findActiveApiKey, type Scope, touchApiKey } from '../db/api-keys.js';
import { HttpProblem } from '../errors/http-problem.js';
import type { Logger } from '../log.js';
import { problem, sendProblem } from './problems.js';
import { countFailure, sendRateLimited } from './rate-limits.js';

export interface Principal {
  id: string;
  name: string;
  scopes: Scope[];
}

/**
 * What a route needs, declared in its route config (`config: { scope: 'pms' }`):
 * - `public`: no key (health, media, signed inbound webhooks);
 * - `key`: any valid key, whatever its scopes (docs);
 * - a key scope (`pms`, `admin`, `ops`, `monitor`): a key holding it; `admin` keys may use every
 *   route except those that need `ops` (Bull Board's write actions), `monitor` ones included.
 */
export type RouteScope = 'public' | 'key' | Scope;

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    scope?: RouteScope;
  }
  interface FastifyInstance {
    /** Every route registered so far, with the scope it declared (for the startup check and tests). */
    readonly declaredRoutes: DeclaredRoute[];
  }
}

export interface DeclaredRoute {
  method: string;
  url: string;
  scope: RouteScope | undefined;
  websocket: boolean;
  /** The route's request schemas as declared (zod), for tests that generate requests from them. */
  schema: RouteOptions['schema'];
}

/**
 * Published (by `npm run keys -- revoke`) so every web process drops its cached keys at once and
 * closes the event streams of keys no longer active.
 */
export const apiKeysChangedChannel = (prefix: string) => `${prefix}:api-keys:changed`;

/** Tells every web process that keys changed (after a revocation). */
export async function announceApiKeysChanged(redis: RedisClient, prefix: string): Promise<void> {
  await redis.publish(apiKeysChangedChannel(prefix), 'revoked');
}

export interface KeyVerifier {
  verify(key: string): Promise<Principal | undefined>;
  /** True when `key` is a valid key this process verified recently (no lookup needed). */
  isKnown(key: string): boolean;
  /** Forgets every cached key (after a revocation). */
  flush(): void;
}

const maxCachedKeys = 10_000;

/**
 * Verifies API keys against their stored sha-256 hashes, caching hits for `ttlMs` so the intake
 * path does not query Postgres on every request, and misses for `failureTtlMs` so a repeated
 * wrong key costs no lookup either. `last_used_at` is written when the cache is refreshed, at
 * most once per key per `ttlMs`.
 */
export function createKeyVerifier(db: Knex, ttlMs: number, log: Logger, failureTtlMs = 60_000): KeyVerifier {
  const cache = new Map<string, { principal: Principal; expires: number }>();
  const unknown = new Map<string, number>();
  return {
    async verify(key) {
      const now = Date.now();
      const hit = cache.get(key);
      if (hit && hit.expires > now) return hit.principal;
      if ((unknown.get(key) ?? 0) > now) return undefined;
      const row = await findActiveApiKey(db, key);
      if (!row) {
        cache.delete(key);
        if (failureTtlMs > 0) {
          if (unknown.size >= maxCachedKeys) unknown.clear();
          unknown.set(key, now + failureTtlMs);
        }
        return undefined;
      }
      if (cache.size >= maxCachedKeys) cache.clear();
      const principal: Principal = { id: row.id, name: row.name, scopes: row.scopes };
      // A key that expires sooner than the cache would keep it is forgotten when it expires.
      const expires = Math.min(Date.now() + ttlMs, row.expires_at?.getTime() ?? Number.POSITIVE_INFINITY);
      if (ttlMs > 0) cache.set(key, { principal, expires });
      touchApiKey(db, row.id).catch((err: unknown) => log.warn({ err }, 'could not record API key use'));
      return principal;
    },
    isKnown(key) {
      return (cache.get(key)?.expires ?? 0) > Date.now();
    },
    flush() {
      cache.clear();
      unknown.clear();
    },
  };
}

/** Bearer, or HTTP Basic with the key as password (so a browser can open Bull Board and the docs). */
function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const [scheme, value] = header.split(' ', 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value.trim();
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  return undefined;
}

/** Whether a key with these scopes may use a route that needs `scope` (`admin` implies every scope but `ops`: `pms`, `monitor`). */
export function allows(scopes: readonly Scope[], scope: Exclude<RouteScope, 'public'>): boolean {
  return scope === 'key' || scopes.includes(scope) || (scope !== 'ops' && scopes.includes('admin'));
}

/**
 * Gives every route registered in `instance` (and its children) `scope`, unless it declares its
 * own: for routes that plugins register (Bull Board, Swagger UI, static media), which cannot
 * carry our route config themselves.
 */
export function assignScope(instance: FastifyInstance, scope: RouteScope): void {
  instance.addHook('onRoute', (route) => {
    route.config = { ...route.config, scope: route.config?.scope ?? scope };
  });
}

type Attempt = { principal: Principal | undefined } | { limited: RateLimiterRes };

/**
 * Keys this process does not know yet, checked against the failed-authentication limit of the
 * client address: the attempt is counted first (atomically, in Redis), and only an attempt within
 * the limit is looked up, so however many wrong keys arrive at once, at most the limit are looked
 * up and answered 401. A key that verifies gives its count back. Concurrent requests with the same
 * key from the same address share one attempt: a burst with a valid key after its cache entry
 * expired costs one count and one lookup, not one each.
 */
function createAttempts(verifier: KeyVerifier) {
  const inFlight = new Map<string, Promise<Attempt>>();
  const attempt = async (address: string, key: string, limiter: RateLimiterAbstract): Promise<Attempt> => {
    const limited = await countFailure(limiter, address);
    if (limited) return { limited };
    const principal = await verifier.verify(key);
    if (principal) await limiter.reward(address, 1).catch(() => undefined);
    return { principal };
  };
  return {
    run(address: string, key: string, limiter: RateLimiterAbstract): Promise<Attempt> {
      const id = `${address}\n${key}`;
      let pending = inFlight.get(id);
      if (!pending) {
        pending = attempt(address, key, limiter).finally(() => inFlight.delete(id));
        inFlight.set(id, pending);
      }
      return pending;
    },
  };
}

/** The caller of a route that needs a key. A missing principal is a 401, never a crash. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) {
    throw new HttpProblem(401, 'unauthorized', 'Send an API key: Authorization: Bearer <key>');
  }
  return request.principal;
}

/**
 * Authorisation on what the router matched: the scope comes from the matched route's config,
 * never from the URL, so encodings (`%61pi`), absolute-form targets, `//`, `..` or case cannot
 * change it. A path that matches no route needs a valid key (any scope) before it learns that it
 * is a 404. The app refuses to start when any route declares no scope (fail closed).
 */
export function registerAuth(
  app: FastifyInstance,
  verifier: KeyVerifier,
  limits: { authFailures?: RateLimiterAbstract } = {},
): void {
  const routes: DeclaredRoute[] = [];
  const options: RouteOptions[] = [];
  const attempts = createAttempts(verifier);
  app.decorate('declaredRoutes', routes);
  // Runs before the onRoute hooks of child scopes (assignScope), so the check waits for onReady.
  app.addHook('onRoute', (route) => {
    options.push(route);
  });
  app.addHook('onReady', async () => {
    routes.length = 0;
    for (const route of options) {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) {
        routes.push({
          method,
          url: route.url,
          scope: route.config?.scope,
          websocket: Boolean((route as { websocket?: boolean }).websocket),
          schema: route.schema,
        });
      }
    }
    const undeclared = routes.filter((route) => route.scope === undefined);
    if (undeclared.length > 0) {
      throw new Error(
        `Refusing to start: ${undeclared.length} route(s) declare no scope in their config: ` +
          undeclared.map((r) => `${r.method} ${r.url}`).join(', '),
      );
    }
  });

  // Answers directly instead of throwing: plugins such as Bull Board install their own error handlers.
  app.addHook('onRequest', async (request, reply) => {
    // A refused WebSocket upgrade has no HTTP exchange left to keep alive: close its socket once the
    // answer is out, or it would linger open for as long as the client likes.
    if (request.headers.upgrade) {
      reply.raw.once('finish', () => {
        if (reply.statusCode !== 101) request.raw.socket?.end();
      });
    }
    const scope: RouteScope = request.is404 ? 'key' : (request.routeOptions.config.scope ?? 'admin');
    if (scope === 'public') return;
    // Browsers only offer a login prompt for Basic; API clients get the Bearer challenge.
    const url = request.routeOptions.url ?? '';
    const challenge =
      url.startsWith('/admin') || url.startsWith('/docs') || url.startsWith('/ops')
        ? { 'WWW-Authenticate': 'Basic realm="Stockflow", charset="UTF-8"' }
        : { 'WWW-Authenticate': 'Bearer realm="Stockflow"' };
    const key = presentedKey(request);
    const failures = limits.authFailures;
    let principal: Principal | undefined;
    if (key && failures && !verifier.isKnown(key)) {
      const outcome = await attempts.run(request.ip, key, failures);
      if ('limited' in outcome) {
        return sendRateLimited(
          request,
          reply,
          outcome.limited,
          'too_many_auth_failures',
          `More than ${failures.points} failed authentications from this address in a minute; retry after the Retry-After seconds`,
        );
      }
      principal = outcome.principal;
    } else if (key) {
      principal = await verifier.verify(key);
    }
    if (!principal) {
      const detail = key
        ? 'The API key is unknown or revoked'
        : 'Send an API key: Authorization: Bearer <key>';
      return sendProblem(reply.headers(challenge), request, problem(401, 'unauthorized', detail));
    }
    if (!allows(principal.scopes, scope)) {
      return sendProblem(
        reply,
        request,
        problem(403, 'forbidden', `This API key lacks the ${scope} scope this route needs`),
      );
    }
    request.principal = principal;
  });
}
