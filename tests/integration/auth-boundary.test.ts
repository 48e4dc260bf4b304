import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assignScope, type DeclaredRoute, type KeyVerifier, registerAuth } from '../../src/api/auth.js';
import { createApiKey } from '../../src/db/api-keys.js';
import { createTestContext, repoRoot, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

/**
 * Authorisation at the socket: every registered route, reached through every request-target
 * form a router may normalise (encoded letters, absolute-form, `//`, `/./`, `..`, case, a
 * trailing slash, `;`), must refuse a request without a key, and an admin route must refuse a
 * pms key. The table is built from the app's own route list, so a new route joins it by itself.
 */

const sampleParams: Record<string, string> = {
  sku: 'SKU-1',
  id: '00000000-0000-4000-8000-000000000000',
  imageId: '00000000-0000-4000-8000-000000000000',
  code: 'LOC-1',
  orderNumber: 'ORDER-1',
};

/** A concrete path for a route pattern: `:param` filled in, a wildcard given one segment. */
function concretePath(url: string): string {
  return url
    .split('/')
    .map((part) => {
      if (part === '*') return 'x';
      if (!part.startsWith(':')) return part;
      const name = part.slice(1).replace(/\(.*$/, '');
      if (url.startsWith('/api/jobs') && name === 'id') return 'products-0123456789abcdef';
      return sampleParams[name] ?? 'x1';
    })
    .join('/');
}

/** The request-targets that must all be refused, each naming the form it tries. */
function targetVariants(path: string): { form: string; target: string; sameRoute: boolean }[] {
  const firstLetter = path.search(/[a-z]/);
  const encoded =
    firstLetter < 0
      ? path
      : `${path.slice(0, firstLetter)}%${path.charCodeAt(firstLetter).toString(16)}${path.slice(firstLetter + 1)}`;
  const [, first = '', ...rest] = path.split('/');
  return [
    { form: 'plain', target: path, sameRoute: true },
    { form: 'percent-encoded letter', target: encoded, sameRoute: true },
    { form: 'absolute-form', target: `http://x${path}`, sameRoute: true },
    { form: 'double slash', target: `/${path}`, sameRoute: false },
    { form: 'dot segment', target: `/.${path}`, sameRoute: false },
    { form: 'dot-dot segment', target: `/${first}/..${path}`, sameRoute: false },
    { form: 'upper case', target: path.toUpperCase(), sameRoute: false },
    { form: 'trailing slash', target: `${path}/`, sameRoute: false },
    { form: 'semicolon', target: `/${[`${first};x`, ...rest].join('/')}`, sameRoute: false },
  ];
}

let ctx: TestContext;
let port: number;
let routes: DeclaredRoute[];
let monitorKey: string;
let opsKey: string;

beforeAll(async () => {
  ctx = await createTestContext();
  monitorKey = (await createApiKey(ctx.api.db, { name: 'test-monitor', scopes: ['monitor'] })).key;
  opsKey = (await createApiKey(ctx.api.db, { name: 'test-ops', scopes: ['ops'] })).key;
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
  routes = ctx.app.declaredRoutes.filter((route) => route.method !== 'OPTIONS');
});

afterAll(async () => {
  await ctx?.close();
});

describe('every route over a real socket', () => {
  it('knows the routes of every part of the app, each with a declared scope', () => {
    const urls = new Set(routes.map((r) => r.url));
    for (const expected of [
      '/api/pms/products',
      '/api/jobs/:id',
      '/api/webhooks/endpoints',
      '/admin/queues',
      '/docs/json',
      '/metrics',
      '/api/pms/events/ws',
    ]) {
      expect(urls, expected).toContain(expected);
    }
    expect(routes.filter((r) => r.scope === undefined)).toEqual([]);
    expect(routes.length).toBeGreaterThan(50);
  });

  it('refuses every non-public route without a key, whatever the request-target form', async () => {
    const failures: string[] = [];
    let checked = 0;
    for (const route of routes) {
      if (route.scope === 'public') continue;
      for (const variant of targetVariants(concretePath(route.url))) {
        const response = await rawRequest(port, {
          method: route.method,
          target: variant.target,
          body: ['POST', 'PUT', 'PATCH'].includes(route.method) ? '{}' : undefined,
        });
        checked++;
        if (response.status !== 401) {
          failures.push(`${route.method} ${variant.target} (${variant.form}): ${response.status}`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(checked).toBeGreaterThan(400);
  });

  it('refuses a pms key on every admin route, whatever the request-target form', async () => {
    const failures: string[] = [];
    for (const route of routes) {
      if (route.scope !== 'admin') continue;
      for (const variant of targetVariants(concretePath(route.url))) {
        const response = await rawRequest(port, {
          method: route.method,
          target: variant.target,
          headers: { authorization: `Bearer ${ctx.pmsKey}` },
          body: ['POST', 'PUT', 'PATCH'].includes(route.method) ? '{}' : undefined,
        });
        // The forms the router maps to the same route are refused for lack of scope; the others
        // match nothing: a 404 for a valid key (405 where another method has that path).
        const expected = variant.sameRoute ? [403] : [403, 404, 405];
        if (!expected.includes(response.status)) {
          failures.push(`${route.method} ${variant.target} (${variant.form}): ${response.status}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('refuses pms and admin keys on every ops route (Bull Board writes), whatever the request-target form', async () => {
    const opsRoutes = routes.filter((route) => route.scope === 'ops');
    // The read-only board's writes and the whole ops board.
    expect(opsRoutes.some((r) => r.url.startsWith('/admin/queues/') && r.method === 'PUT')).toBe(true);
    expect(opsRoutes.some((r) => r.url.startsWith('/admin/ops/queues') && r.method === 'GET')).toBe(true);
    const failures: string[] = [];
    for (const route of opsRoutes) {
      for (const key of [ctx.pmsKey, ctx.adminKey]) {
        for (const variant of targetVariants(concretePath(route.url))) {
          const response = await rawRequest(port, {
            method: route.method,
            target: variant.target,
            headers: { authorization: `Bearer ${key}` },
            body: ['POST', 'PUT', 'PATCH'].includes(route.method) ? '{}' : undefined,
          });
          const expected = variant.sameRoute ? [403] : [403, 404, 405];
          if (!expected.includes(response.status)) {
            failures.push(`${route.method} ${variant.target} (${variant.form}): ${response.status}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('lets a monitor key read /metrics and /api/ops/* only; admin keys read them too, pms and ops keys do not', async () => {
    const monitorRoutes = routes.filter((route) => route.scope === 'monitor');
    expect(monitorRoutes.map((r) => `${r.method} ${r.url}`).sort()).toEqual([
      'GET /api/ops/alerts',
      'GET /api/ops/cache',
      'GET /metrics',
      'HEAD /api/ops/alerts',
      'HEAD /api/ops/cache',
      'HEAD /metrics',
    ]);
    const failures: string[] = [];
    const send = (route: DeclaredRoute, target: string, key: string) =>
      rawRequest(port, {
        method: route.method,
        target,
        headers: { authorization: `Bearer ${key}` },
        body: ['POST', 'PUT', 'PATCH'].includes(route.method) ? '{}' : undefined,
      });
    for (const route of monitorRoutes) {
      const target = concretePath(route.url);
      for (const [key, expected] of [
        [monitorKey, 200],
        [ctx.adminKey, 200],
        [ctx.pmsKey, 403],
        [opsKey, 403],
      ] as const) {
        const response = await send(route, target, key);
        if (response.status !== expected) failures.push(`${route.method} ${target}: ${response.status}`);
      }
    }
    // Every route that needs another scope refuses the monitor key, whatever the request-target form.
    for (const route of routes) {
      if (['public', 'key', 'monitor'].includes(route.scope ?? '')) continue;
      for (const variant of targetVariants(concretePath(route.url))) {
        const response = await send(route, variant.target, monitorKey);
        const expected = variant.sameRoute ? [403] : [403, 404, 405];
        if (!expected.includes(response.status)) {
          failures.push(`${route.method} ${variant.target} (${variant.form}): ${response.status}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('lists every route in docs/security.md with the scope it declares', () => {
    const table = routeTable();
    expect(table.length).toBeGreaterThan(8);
    const wrong = routes
      .filter((route) => route.method !== 'HEAD')
      .flatMap((route) => {
        const row = table
          .filter((r) => r.pattern.test(route.url) && (r.methods === 'all' || r.methods.has(route.method)))
          .sort((a, b) => b.specificity - a.specificity)[0];
        if (!row) return [`${route.method} ${route.url}: no row`];
        return row.scope === route.scope
          ? []
          : [`${route.method} ${route.url}: ${route.scope}, listed ${row.scope}`];
      });
    expect(wrong).toEqual([]);
  });

  it('refuses the WebSocket upgrade without a key (no 101), in every request-target form', async () => {
    const sockets = routes.filter((route) => route.websocket);
    expect(sockets.length).toBeGreaterThan(0);
    for (const route of sockets) {
      for (const variant of targetVariants(concretePath(route.url))) {
        const response = await rawRequest(port, {
          method: 'GET',
          target: variant.target,
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          },
        });
        expect(response.status, `${variant.target} (${variant.form})`).toBe(401);
      }
    }
  });

  it('answers the attacker probes of the security report with 401', async () => {
    for (const [method, target] of [
      ['GET', '/%61pi/pms/products?limit=2'],
      ['GET', '/%6detrics'],
      ['GET', '/%61dmin/queues/api/queues'],
      ['GET', 'http://x/api/webhooks/endpoints'],
      ['POST', '/%61pi/pms/sync/ack'],
    ] as const) {
      const response = await rawRequest(port, {
        method,
        target,
        body: method === 'POST' ? JSON.stringify({ consumer: 'pms', seq: 999 }) : undefined,
      });
      expect(response.status, target).toBe(401);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(response.body)).toMatchObject({ status: 401, code: 'unauthorized' });
    }
  });

  it('answers 404, not 403, to a valid key on a path that matches no route', async () => {
    for (const key of [ctx.pmsKey, ctx.adminKey]) {
      const response = await rawRequest(port, {
        method: 'GET',
        target: '/api/nope',
        headers: { authorization: `Bearer ${key}` },
      });
      expect(response.status).toBe(404);
      expect(JSON.parse(response.body)).toMatchObject({ code: 'not_found' });
    }
    const anonymous = await rawRequest(port, { method: 'GET', target: '/api/nope' });
    expect(anonymous.status).toBe(401);
  });

  it('serves the public routes without a key', async () => {
    expect((await rawRequest(port, { method: 'GET', target: '/healthz' })).status).toBe(200);
    expect((await rawRequest(port, { method: 'GET', target: '/docs/json' })).status).toBe(401);
    const withKey = await rawRequest(port, {
      method: 'GET',
      target: '/docs/json',
      headers: { authorization: `Bearer ${ctx.pmsKey}` },
    });
    expect(withKey.status).toBe(200);
  });
});

/**
 * The table "Every route and its scope" of docs/security.md: backticked path patterns (`*` for any
 * rest), methods (`GET, POST`, `all`, `non-GET`) and the scope.
 */
function routeTable() {
  const page = readFileSync(path.join(repoRoot, 'docs/security.md'), 'utf8');
  const section = page.split('### Every route and its scope')[1]?.split(/\n#{2,3} /)[0] ?? '';
  const every = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => {
      const [paths = '', methods = '', scope = ''] = line.split('|').slice(1);
      const listed =
        methods.trim() === 'all'
          ? ('all' as const)
          : new Set(
              methods.trim() === 'non-GET' ? every.filter((m) => m !== 'GET') : methods.trim().split(/,\s*/),
            );
      return [...paths.matchAll(/`([^`]+)`/g)].map(([, glob = '']) => ({
        pattern: new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`),
        specificity: glob.replace(/\*/g, '').length,
        methods: listed,
        scope: /`(\w+)`/.exec(scope)?.[1],
      }));
    });
}

describe('fail closed', () => {
  const verifier: KeyVerifier = {
    verify: async () => undefined,
    isKnown: () => false,
    flush: () => undefined,
  };

  it('refuses to start with a route that declares no scope', async () => {
    const app = Fastify();
    registerAuth(app, verifier);
    app.get('/declared', { config: { scope: 'public' } }, async () => 'ok');
    app.get('/forgotten', async () => 'oops');
    await expect(app.ready()).rejects.toThrow(/declare no scope.*GET \/forgotten/);
    await app.close();
  });

  it('refuses to start with a plugin route that nobody gave a scope, and starts once one is assigned', async () => {
    const plugin = async (instance: ReturnType<typeof Fastify>) => {
      instance.get('/plugin-route', async () => 'ok');
    };
    const bare = Fastify();
    registerAuth(bare, verifier);
    await bare.register(plugin);
    await expect(bare.ready()).rejects.toThrow(/plugin-route/);
    await bare.close();

    const scoped = Fastify();
    registerAuth(scoped, verifier);
    await scoped.register(async (instance) => {
      assignScope(instance, 'admin');
      await instance.register(plugin);
    });
    await scoped.ready();
    expect(scoped.declaredRoutes.find((r) => r.url === '/plugin-route')?.scope).toBe('admin');
    const response = await scoped.inject({ method: 'GET', url: '/plugin-route' });
    expect(response.statusCode).toBe(401);
    await scoped.close();
  });
});
