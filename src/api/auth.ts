import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Knex } from 'knex';
import { findActiveApiKey, type Scope, touchApiKey } from '../db/api-keys.js';
import type { Logger } from '../log.js';
import { problem, sendProblem } from './problems.js';

export interface Principal {
  id: string;
  name: string;
  scopes: Scope[];
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
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

/** The scope a path needs: `pms` for the PMS surface, `admin` for the rest; undefined when public. */
export function requiredScope(path: string): Scope | undefined {
  const under = (prefix: string) => path === prefix || path.startsWith(`${prefix}/`);
  if (under('/api/pms') || under('/api/jobs')) return 'pms';
  if (path.startsWith('/api/') || path.startsWith('/admin') || path === '/metrics') return 'admin';
  return undefined;
}

/** Bearer, or HTTP Basic with the key as password (so a browser can open Bull Board). */
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

export function registerAuth(app: FastifyInstance, verifier: KeyVerifier): void {
  // Answers directly instead of throwing: plugins such as Bull Board install their own error handlers.
  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const scope = requiredScope(path);
    if (!scope) return;
    // Browsers only offer a login prompt for Basic; API clients get the Bearer challenge.
    const challenge = path.startsWith('/admin')
      ? { 'WWW-Authenticate': 'Basic realm="Stockflow admin", charset="UTF-8"' }
      : { 'WWW-Authenticate': 'Bearer realm="Stockflow"' };
    const key = presentedKey(request);
    const principal = key ? await verifier.verify(key) : undefined;
    if (!principal) {
      const detail = key
        ? 'The API key is unknown or revoked'
        : 'Send an API key: Authorization: Bearer <key>';
      return sendProblem(reply.headers(challenge), request, problem(401, 'unauthorized', detail));
    }
    if (!principal.scopes.includes(scope) && !principal.scopes.includes('admin')) {
      return sendProblem(
        reply,
        request,
        problem(403, 'forbidden', `This API key lacks the ${scope} scope needed for ${path}`),
      );
    }
    request.principal = principal;
  });
}
