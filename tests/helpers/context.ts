import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'bullmq';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Knex } from 'knex';
import type { DestinationStream } from 'pino';
import { expect, inject } from 'vitest';
import { deleteScratchKeys } from '../../scripts/bench/scratch.js';
import { buildApp } from '../../src/api/app.js';
import { type ApiDeps, openApiDeps, sharedWorkerDeps } from '../../src/api/deps.js';
import { type Config, parseConfig } from '../../src/config.js';
import type { RedisClient } from '../../src/connections.js';
import { openPostgres, openRedis } from '../../src/connections.js';
import { createApiKey } from '../../src/db/api-keys.js';
import type { Db } from '../../src/db/knex.js';
import { describeDrift, findDrift } from '../../src/domain/reconcile.js';
import { closeWithin } from '../../src/entry.js';
import { createLogger } from '../../src/log.js';
import type { QueueName } from '../../src/queues/job.js';
import { getJobStatus, type JobStatus } from '../../src/queues/job-status.js';
import { checkEventData } from '../../src/schemas/event-types.js';
import { parseQueueList, startWorkers, stopWorkers } from '../../src/workers/queue-workers.js';
import {
  cloneTemplate,
  dropDatabase,
  openConnections,
  setDatabaseTimeZone,
  testDatabaseUrl,
} from './databases.js';

/** The SECRETS_KEY of every test context (tests of rotation make their own). */
export const testSecretsKey = Buffer.alloc(32, 7).toString('base64');

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Contexts opened by the current test file and not closed yet: the leak check fails the file on any. */
export const openContexts = new Set<TestContext>();

export interface TestContext {
  config: Config;
  /** The environment the context's config came from; spawned processes get the same. */
  env: Record<string, string>;
  database: string;
  api: ApiDeps;
  app: FastifyInstance;
  adminKey: string;
  pmsKey: string;
  /** `app.inject` with `Authorization: Bearer` (the pms key unless `key` says otherwise; null for none). */
  request(
    options: InjectOptions & { key?: string | null },
  ): Promise<LightMyRequestResponse & { body: string }>;
  /** Starts in-process workers for these queues (default: all), on a worker-role pool of their own. */
  startWorkers(queues?: QueueName[]): Promise<Worker[]>;
  /** Polls the job until it completes or fails. */
  waitForJob(id: string, timeoutMs?: number): Promise<JobStatus>;
  /** Starts `src/workers/main.ts` as a separate process on this context's database and queues. */
  spawnWorker(args?: string[], env?: Record<string, string>): ChildProcess;
  /** Starts `src/api/server.ts` as a separate web process on a free port; resolves once it listens. */
  spawnWeb(env?: Record<string, string>): Promise<{ child: ChildProcess; url: string }>;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** Environment overrides on top of the test defaults. */
  env?: Record<string, string>;
  /** In-process workers to start at once: true for all queues. */
  workers?: boolean | QueueName[];
  /** Where the context's logs go (with LOG_LEVEL in env): for tests that read log output. */
  logDestination?: DestinationStream;
  /**
   * A migrated database of another server (a private cluster) to use instead of a clone of the
   * template; its owner drops it.
   */
  databaseUrl?: string;
  /**
   * The session TimeZone of every connection to the database unless it sets its own (`ALTER DATABASE
   * … SET timezone`, before the context connects): the app's pools, its workers, spawned processes.
   */
  timeZone?: string;
}

export async function createTestContext(options: ContextOptions = {}): Promise<TestContext> {
  const id = randomBytes(5).toString('hex');
  const database = options.databaseUrl
    ? new URL(options.databaseUrl).pathname.slice(1)
    : `stockflow_test_${id}`;
  if (!options.databaseUrl) await cloneTemplate(inject('templateDatabase'), database);
  const databaseUrl = options.databaseUrl ?? testDatabaseUrl(database);
  if (options.timeZone) await setDatabaseTimeZone(databaseUrl, options.timeZone);
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_MAX: '10',
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    // The redis-cluster project of vitest.config.ts runs its files on the scratch cluster of global-setup.ts.
    ...(inject('redisClusterNodes') ? { REDIS_CLUSTER_NODES: inject('redisClusterNodes')! } : {}),
    QUEUE_PREFIX: `sft-${id}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    JOB_BACKOFF_MS: '20',
    // A fixed test key, so a spawned web or worker process opens what this one sealed.
    SECRETS_KEY: testSecretsKey,
    SHUTDOWN_TIMEOUT_MS: '10000',
    // The group-commit-off project of vitest.config.ts runs the inventory tests with it off.
    ...(process.env.INVENTORY_GROUP_COMMIT
      ? { INVENTORY_GROUP_COMMIT: process.env.INVENTORY_GROUP_COMMIT }
      : {}),
    ...options.env,
  };
  const config = parseConfig(env);
  const log = createLogger(config, 'stockflow-test', options.logDestination);
  const api = await openApiDeps(config, log);
  const app = await buildApp(api);
  await app.ready();
  const admin = await createApiKey(api.db, { name: 'test-admin', scopes: ['admin'] });
  const pms = await createApiKey(api.db, { name: 'test-pms', scopes: ['pms'] });

  // The arrays startWorkers returns, kept as they are: the watchdog replaces stuck workers in them.
  const workerGroups: Worker[][] = [];
  const workerConnections: RedisClient[] = [];
  let workerDb: Promise<Db> | undefined;
  const children = new Set<ChildProcess>();

  const ctx: TestContext = {
    config,
    env,
    database,
    api,
    app,
    adminKey: admin.key,
    pmsKey: pms.key,
    async request({ key, headers, ...rest }) {
      const token = key === undefined ? pms.key : key;
      return app.inject({
        ...rest,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      }) as Promise<LightMyRequestResponse & { body: string }>;
    },
    async startWorkers(queues) {
      workerDb ??= openPostgres(config, 'worker');
      const db = await workerDb;
      const redis = await openRedis(config, 'worker');
      workerConnections.push(redis);
      const started = await startWorkers(
        sharedWorkerDeps(api, { redis, db }),
        queues ?? parseQueueList('all'),
      );
      workerGroups.push(started);
      return started;
    },
    async waitForJob(jobId, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await getJobStatus(api.queues, jobId);
        if (status && (status.state === 'completed' || status.state === 'failed')) return status;
        if (Date.now() > deadline) {
          throw new Error(`job ${jobId} did not finish within ${timeoutMs} ms (state ${status?.state})`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    spawnWorker(args = [], extraEnv = {}) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/workers/main.ts', ...args], {
        cwd: repoRoot,
        env: { ...process.env, ...env, LOG_LEVEL: 'info', ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // Always drain the pipes: a full pipe would block the child's logger and so the child.
      child.stdout.on('data', () => undefined);
      child.stderr.on('data', () => undefined);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    async spawnWeb(extraEnv = {}) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/api/server.ts'], {
        cwd: repoRoot,
        env: { ...process.env, ...env, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', () => undefined);
      child.stderr.on('data', () => undefined);
      children.add(child);
      child.once('exit', () => children.delete(child));
      const line = await waitForOutput(child, /Server listening at http:\/\/127\.0\.0\.1:\d+/);
      const url = /http:\/\/127\.0\.0\.1:\d+/.exec(line)![0];
      return { child, url };
    },
    async close() {
      const leaks: string[] = [];
      if (children.size > 0) {
        leaks.push(`${children.size} child process(es) still running`);
        for (const child of children) child.kill('SIGKILL');
      }
      await stopWorkers(workerGroups.flat(), 10_000);
      // Bounded as the worker process bounds it: a wedged cluster connection's quit may never answer.
      for (const redis of workerConnections) if (!(await closeWithin(redis.quit(), 5000))) redis.disconnect();
      if (workerDb) await (await workerDb).destroy();
      // Ledger = levels, after every test file: whatever the tests did, no level may drift.
      const drift = await findDrift(api.db);
      if (drift.length > 0)
        leaks.push(`ledger drift in ${drift.length} level(s): ${drift.map(describeDrift).join('; ')}`);
      // Every event written is declared in the catalogue, its data as its schema says (a sample per type).
      const eventProblems = await checkWrittenEvents(api.db);
      if (eventProblems.length > 0) leaks.push(`events outside the catalogue: ${eventProblems.join('; ')}`);
      await app.close();
      await api.close();
      await deleteScratchKeys(config.REDIS_URL, config.QUEUE_PREFIX, config.REDIS_CLUSTER_NODES);
      if (!options.databaseUrl) {
        const connections = await openConnections(database);
        if (connections > 0) leaks.push(`${connections} Postgres connection(s) still open`);
        await dropDatabase(database);
      }
      openContexts.delete(ctx);
      if (leaks.length > 0) throw new Error(`test context leaked: ${leaks.join('; ')}`);
    },
  };
  openContexts.add(ctx);
  if (options.workers) await ctx.startWorkers(options.workers === true ? undefined : options.workers);
  return ctx;
}

/** What is wrong with the events of a database against the catalogue: up to 50 of each type are checked. */
export async function checkWrittenEvents(db: Knex): Promise<string[]> {
  const { rows } = await db.raw<{ rows: { type: string; data: unknown }[] }>(
    `select type, data from (
       select type, data, row_number() over (partition by type order by seq desc) as n from events
     ) sample where n <= 50`,
  );
  return [...new Set(rows.flatMap((row) => checkEventData(row.type, row.data) ?? []))];
}

/** Resolves with the first line of a child's output matching `pattern`. */
export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; saw:\n${seen.slice(-2000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split('\n').find((l) => pattern.test(l));
      if (line) {
        cleanup();
        resolve(line);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`process exited (${code}) before printing ${pattern}; saw:\n${seen.slice(-2000)}`));
    };
    function cleanup() {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Resolves with the exit code once the child has exited. */
export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export const json = (response: { body: string }) => JSON.parse(response.body);

/** Creates these products (price 1.00 EUR), waiting for each job; each must answer 201. */
export async function createProducts(ctx: TestContext, skus: readonly string[]): Promise<void> {
  for (const sku of skus) {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
    });
    expect(res.statusCode).toBe(201);
  }
}
