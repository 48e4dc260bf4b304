import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import type { Knex } from 'knex';
import { findActiveApiKey, type Scope, touchApiKey } from '../db/api-keys.js';
import type { Logger } from '../log.js';
import { HttpProblem, problem, sendProblem } from './problems.js';

export interface Principal {
  id: string;
  name: string;
  scopes: Scope[];
}

/**
 * What a route needs, declared in its route config (`config: { scope: 'pms' }`):
 * - `public`: no key (health, media, signed inbound webhooks);
 * - `key`: any valid key, whatever its scopes (docs);
 * - a key scope (`pms`, `admin`, `ops`): a key holding it; `admin` keys may use every route except
 *   those that need `ops` (Bull Board's write actions).
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
}

/** Published (by `npm run keys -- revoke`) so every web process drops its cached keys at once. */
export const apiKeysChangedChannel = (prefix: string) => `${prefix}:api-keys:changed`;

export interface KeyVerifier {
  verify(key: string): Promise<Principal | undefined>;
  /** Forgets every cached key (after a revocation). */
  flush(): void;
}

const maxCachedKeys = 10_000;

/**
 * Verifies API keys against their stored sha-256 hashes, caching hits for `ttlMs` so the intake
 * path does not query Postgres on every request. `last_used_at` is written when the cache is
 * refreshed, at most once per key per `ttlMs`.
 */
export function createKeyVerifier(db: Knex, ttlMs: number, log: Logger): KeyVerifier {
  const cache = new Map<string, { principal: Principal; expires: number }>();
  return {
    async verify(key) {
      const hit = cache.get(key);
      if (hit && hit.expires > Date.now()) return hit.principal;
      const row = await findActiveApiKey(db, key);
      if (!row) {
        cache.delete(key);
        return undefined;
      }
      if (cache.size >= maxCachedKeys) cache.clear();
      const principal: Principal = { id: row.id, name: row.name, scopes: row.scopes };
      if (ttlMs > 0) cache.set(key, { principal, expires: Date.now() + ttlMs });
      touchApiKey(db, row.id).catch((err: unknown) => log.warn({ err }, 'could not record API key use'));
      return principal;
    },
    flush() {
      cache.clear();
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

/** Whether a key with these scopes may use a route that needs `scope` (`admin` implies every scope but `ops`). */
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
export function registerAuth(app: FastifyInstance, verifier: KeyVerifier): void {
  const routes: DeclaredRoute[] = [];
  const options: RouteOptions[] = [];
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
      url.startsWith('/admin') || url.startsWith('/docs')
        ? { 'WWW-Authenticate': 'Basic realm="Stockflow", charset="UTF-8"' }
        : { 'WWW-Authenticate': 'Bearer realm="Stockflow"' };
    const key = presentedKey(request);
    const principal = key ? await verifier.verify(key) : undefined;
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
