import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteScratchKeys, freePort } from '../../scripts/bench/scratch.js';
import { exitOf, repoRoot, waitForOutput } from '../helpers/context.js';
import { dropDatabase, testDatabaseUrl } from '../helpers/databases.js';

/** Runs `scripts/start.ts` (what `npm start` runs after building) with the given environment. */
function start(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '10000',
      SECRETS_KEY_FILE: keyFile,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  return { child, output: () => output };
}

const id = randomBytes(4).toString('hex');
/** Where this file's `npm start` runs keep their generated SECRETS_KEY (not the project directory). */
const keyFile = path.join(os.tmpdir(), `stockflow-start-${id}.key`);
const database = `stockflow_start_${id}`;
const prefix = `sfs-${id}`;
afterAll(async () => {
  await rm(keyFile, { force: true });
  await dropDatabase(database);
  await deleteScratchKeys(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', prefix);
});

describe('npm start', () => {
  it('creates the database, migrates, prints a first API key, serves the API and runs the workers', async () => {
    const port = await freePort();
    const { child, output } = start({
      DATABASE_URL: testDatabaseUrl(database),
      QUEUE_PREFIX: prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    try {
      await waitForOutput(child, /Stockflow is running/, 30_000);
      // No SECRETS_KEY was set: a local one was generated, readable by its owner only.
      expect(output()).toContain(`a local one was generated into ${keyFile}`);
      const keyStat = await stat(keyFile);
      expect(keyStat.mode & 0o777).toBe(0o600);
      expect(Buffer.from((await readFile(keyFile, 'utf8')).trim(), 'base64')).toHaveLength(32);
      const key = output().match(/^\s+(sf_[A-Za-z0-9_-]+)$/m)?.[1];
      expect(key).toBeDefined();
      const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      const created = await fetch(`http://127.0.0.1:${port}/api/pms/products`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ sku: 'START-1', name: 'Kettle', price: { amount: 3900, currency: 'EUR' } }),
      });
      expect(created.status).toBe(202);
      const location = created.headers.get('location')!;
      let state = '';
      for (let i = 0; i < 200 && state !== 'completed'; i++) {
        state = (
          (await (await fetch(`http://127.0.0.1:${port}${location}`, { headers })).json()) as {
            state: string;
          }
        ).state;
        if (state !== 'completed') await new Promise((r) => setTimeout(r, 50));
      }
      expect(state).toBe('completed');
      const product = await fetch(`http://127.0.0.1:${port}/api/pms/products/START-1`, { headers });
      expect(await product.json()).toMatchObject({ sku: 'START-1', version: 1 });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exitOf(child)).toBe(0);
  });

  it('names PostgreSQL, its URL and how to start it when it is unreachable, without a stack trace', async () => {
    const { child, output } = start({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/stockflow' });
    expect(await exitOf(child)).toBe(1);
    expect(output()).toContain('PostgreSQL is not reachable at postgres://postgres@127.0.0.1:1/stockflow');
    expect(output()).toContain('bash scripts/services.sh');
    expect(output()).not.toMatch(/^\s+at /m);
  });

  it('names Redis when it is unreachable', async () => {
    const { child, output } = start({
      DATABASE_URL: testDatabaseUrl(database),
      REDIS_URL: 'redis://127.0.0.1:1',
      QUEUE_PREFIX: prefix,
    });
    expect(await exitOf(child)).toBe(1);
    expect(output()).toContain('Redis is not reachable at redis://127.0.0.1:1');
    expect(output()).not.toMatch(/^\s+at /m);
  });

  it('stops at start on a bad setting, naming the variable', async () => {
    const { child, output } = start({ PORT: 'eighty', WORKER_CONCURRENCY_PRODUCTS: '0' });
    expect(await exitOf(child)).toBe(1);
    expect(output()).toContain('PORT');
    expect(output()).toContain('WORKER_CONCURRENCY_PRODUCTS');
    expect(output()).not.toMatch(/^\s+at /m);
  });
});
