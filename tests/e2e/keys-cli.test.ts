import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, repoRoot, type TestContext } from '../helpers/context.js';

const run = promisify(execFile);
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

/** Runs `npm run keys -- …` (the script behind it) against this file's database. */
async function keys(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

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

it('explains bad usage with exit code 2', async () => {
  const bad = await keys('create', '--name', 'x', '--scope', 'root');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('unknown scope(s): root');
  expect((await keys('revoke', 'nobody')).code).toBe(2);
});
