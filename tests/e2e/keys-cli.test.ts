import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, repoRoot, type TestContext } from '../helpers/context.js';
import { adminQuery, testDatabaseUrl } from '../helpers/databases.js';

const run = promisify(execFile);
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

/** Runs a CLI script (what `npm run <name>` runs) against this file's database unless `env` says otherwise. */
async function cli(script: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const keys = (...args: string[]) => cli('scripts/keys.ts', args);

it('creates a key, printing it once alone on the last line; the key works; only its hash is stored', async () => {
  const created = await keys('create', '--name', 'pms-shop', '--scope', 'pms');
  expect(created.code).toBe(0);
  const lines = created.stdout.trimEnd().split('\n');
  const key = lines[lines.length - 1]!;
  expect(key).toMatch(/^sf_[A-Za-z0-9_-]{40,}$/);
  const res = await ctx.request({ method: 'GET', url: '/api/pms/products', key });
  expect(res.statusCode).toBe(200);
  const row = await ctx.api.db('api_keys').where({ name: 'pms-shop' }).first();
  expect(row.key_hash).toMatch(/^[0-9a-f]{64}$/);
  expect(JSON.stringify(row)).not.toContain(key);
});

it('lists keys without their secrets', async () => {
  const listed = await keys('list');
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain('pms-shop');
  expect(listed.stdout).toContain('active');
  expect(listed.stdout).not.toMatch(/sf_[A-Za-z0-9_-]{40,}/);
});

it('revokes by name: the key then gets 401 in a running web process', async () => {
  const created = await keys('create', '--name', 'short-lived', '--scope', 'pms');
  const key = created.stdout.trimEnd().split('\n').pop()!;
  expect((await ctx.request({ method: 'GET', url: '/api/pms/products', key })).statusCode).toBe(200);
  const revoked = await keys('revoke', 'short-lived');
  expect(revoked.code).toBe(0);
  expect(revoked.stdout).toContain('revoked short-lived');
  // The revoke command announces the change on Redis; the web process drops its cached key.
  let status = 200;
  for (let i = 0; i < 100 && status === 200; i++) {
    status = (await ctx.request({ method: 'GET', url: '/api/pms/products', key })).statusCode;
    if (status === 200) await new Promise((r) => setTimeout(r, 50));
  }
  expect(status).toBe(401);
});

it('creates a monitor key, optionally expiring: it reads /metrics and /api/ops/*, nothing else', async () => {
  const created = await keys('create', '--name', 'prometheus', '--scope', 'monitor', '--expires-in', '30d');
  expect(created.code, created.stderr).toBe(0);
  expect(created.stdout).toMatch(/with scopes monitor, expiring 20\d\d-/);
  const key = created.stdout.trimEnd().split('\n').pop()!;
  for (const [url, status] of [
    ['/metrics', 200],
    ['/api/ops/alerts', 200],
    ['/api/ops/cache', 200],
    ['/api/pms/products', 403],
    ['/api/pms/events', 403],
    ['/api/webhooks/endpoints', 403],
  ] as const) {
    expect((await ctx.request({ method: 'GET', url, key })).statusCode, url).toBe(status);
  }
  const row = await ctx.api.db('api_keys').where({ name: 'prometheus' }).first();
  expect(row.expires_at.getTime() - Date.now()).toBeGreaterThan(29 * 86_400_000);
  expect((await keys('list')).stdout).toMatch(/prometheus\s+monitor\s.*active until 20\d\d-/);
  const bad = await keys('create', '--name', 'x', '--scope', 'pms', '--expires-in', 'soon');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('--expires-in takes a duration');
});

it('explains bad usage with exit code 2', async () => {
  const bad = await keys('create', '--name', 'x', '--scope', 'root');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('unknown scope(s): root');
  expect((await keys('revoke', 'nobody')).code).toBe(2);
});

describe('a missing or empty database, or no server, is named as such without a stack trace', () => {
  const noStack = (stderr: string) => expect(stderr).not.toMatch(/\n\s+at /);

  it('names a database that does not exist (keys, reconcile, replay)', async () => {
    const missing = { DATABASE_URL: testDatabaseUrl(`stockflow_missing_${process.pid}`) };
    for (const [script, args] of [
      ['scripts/keys.ts', ['list']],
      ['scripts/reconcile.ts', []],
      ['scripts/replay.ts', ['--from', '1']],
    ] as const) {
      const result = await cli(script, [...args], missing);
      expect(result.code, script).toBe(1);
      expect(result.stderr, script).toMatch(/database "stockflow_missing_\d+" does not exist/);
      expect(result.stderr, script).toContain('npm run migrate');
      expect(result.stderr, script).not.toContain('not reachable');
      noStack(result.stderr);
    }
  });

  it('says to migrate when the database has no tables', async () => {
    const empty = `stockflow_empty_${process.pid}`;
    await adminQuery(`create database ${empty}`);
    try {
      const result = await cli('scripts/keys.ts', ['list'], { DATABASE_URL: testDatabaseUrl(empty) });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('no Stockflow tables yet (relation "api_keys" does not exist)');
      noStack(result.stderr);
    } finally {
      await adminQuery(`drop database if exists ${empty} with (force)`);
    }
  });

  it('says PostgreSQL is not reachable only when it is not (migrate too)', async () => {
    const result = await cli('scripts/migrate.ts', [], { DATABASE_URL: 'postgres://postgres@127.0.0.1:9/x' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/PostgreSQL is not reachable at .*ECONNREFUSED/);
    noStack(result.stderr);
  });

  it('answers a bad option with usage exit code 2, not a stack', async () => {
    const result = await cli('scripts/reconcile.ts', ['--frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Unknown option '--frobnicate'");
    noStack(result.stderr);
  });
});
