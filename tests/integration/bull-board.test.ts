import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/db/api-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

/**
 * Bull Board's boundary over a real socket, without a browser: read-only for admin keys, writes
 * for ops keys (or admin keys with BULL_BOARD_WRITE), never adding jobs or editing job data, and
 * never framed.
 */

let ctx: TestContext;
let writable: TestContext;
let opsKey: string;
let port: number;
let writablePort: number;

beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
  writable = await createTestContext({ env: { BULL_BOARD_WRITE: 'true' } });
  opsKey = (await createApiKey(ctx.api.db, { name: 'test-ops', scopes: ['ops'] })).key;
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  await writable.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
  writablePort = (writable.app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await ctx?.close();
  await writable?.close();
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** A products job that failed for good (a domain error), to retry from the board. */
async function failedJob(context: TestContext): Promise<string> {
  const res = await context.request({
    method: 'POST',
    url: '/api/pms/products/NOPE-1/publish',
    headers: { 'if-match': '1' },
  });
  expect(res.statusCode).toBe(202);
  const id = json(res).id as string;
  if (context === ctx) expect((await ctx.waitForJob(id)).state).toBe('failed');
  return id;
}

describe('frame protection', () => {
  it("sends frame-ancestors 'none' and X-Frame-Options DENY on every /admin answer, refusals included", async () => {
    for (const [target, headers, status] of [
      ['/admin/queues', {}, 401],
      ['/admin/queues', bearer(ctx.pmsKey), 403],
      ['/admin/queues', bearer(ctx.adminKey), 200],
      ['/admin/queues/api/queues', bearer(ctx.adminKey), 200],
      ['/%61dmin/queues/api/queues', bearer(ctx.adminKey), 200],
      ['/admin/ops/queues', bearer(opsKey), 200],
    ] as const) {
      const response = await rawRequest(port, { method: 'GET', target, headers });
      expect(response.status, target).toBe(status);
      expect(response.headers['content-security-policy'], target).toBe("frame-ancestors 'none'");
      expect(response.headers['x-frame-options'], target).toBe('DENY');
    }
    const api = await rawRequest(port, { method: 'GET', target: '/healthz' });
    expect(api.headers['x-frame-options']).toBeUndefined();
  });
});

describe('read-only by default', () => {
  it('shows admin keys the queues in readOnlyMode and refuses their writes for lack of the ops scope', async () => {
    const queues = await rawRequest(port, {
      method: 'GET',
      target: '/admin/queues/api/queues',
      headers: bearer(ctx.adminKey),
    });
    const list = JSON.parse(queues.body).queues as { name: string; readOnlyMode: boolean }[];
    expect(list.length).toBeGreaterThan(0);
    expect(list.every((q) => q.readOnlyMode)).toBe(true);

    const id = await failedJob(ctx);
    const jobId = id;
    const retry = await rawRequest(port, {
      method: 'PUT',
      target: `/admin/queues/api/queues/products/${encodeURIComponent(jobId)}/retry`,
      headers: bearer(ctx.adminKey),
    });
    expect(retry.status).toBe(403);
    expect(JSON.parse(retry.body)).toMatchObject({ code: 'forbidden' });
    expect(await ctx.api.queues.products.getJobState(jobId)).toBe('failed');
  });

  it('lets an ops key retry a failed job on the ops board (and not an admin key)', async () => {
    const id = await failedJob(ctx);
    const jobId = id;
    const target = `/admin/ops/queues/api/queues/products/${encodeURIComponent(jobId)}/retry`;
    const asAdmin = await rawRequest(port, { method: 'PUT', target, headers: bearer(ctx.adminKey) });
    expect(asAdmin.status).toBe(403);
    const asOps = await rawRequest(port, { method: 'PUT', target, headers: bearer(opsKey) });
    expect(asOps.status).toBe(204);
    // Retried: the job ran again (and failed again, for the same domain reason).
    const job = await ctx.api.queues.products.getJob(jobId);
    expect(job?.attemptsStarted ?? 0).toBeGreaterThanOrEqual(1);
    expect(await ctx.waitForJob(id)).toMatchObject({ state: 'failed' });
  });

  it('refuses adding jobs and editing job data, even to an ops key and with BULL_BOARD_WRITE', async () => {
    const cases = [
      { method: 'POST', path: '/api/queues/products/add', body: '{"name":"product.delete","data":{}}' },
      { method: 'PATCH', path: '/api/queues/products/x1/update-data', body: '{"data":{}}' },
      { method: 'PATCH', path: '/api/queues/maintenance/job-schedulers/prune-events', body: '{}' },
    ];
    const before = await ctx.api.queues.products.count();
    for (const c of cases) {
      for (const [p, base, key] of [
        [port, '/admin/ops/queues', opsKey],
        [writablePort, '/admin/queues', writable.adminKey],
      ] as const) {
        const response = await rawRequest(p, {
          method: c.method,
          target: `${base}${c.path}`,
          headers: bearer(key),
          body: c.body,
        });
        expect(response.status, `${c.method} ${base}${c.path}`).toBe(403);
        expect(JSON.parse(response.body).detail).toMatch(/cannot add jobs or edit job data/);
      }
    }
    expect(await ctx.api.queues.products.count()).toBe(before);
  });

  it('lets admin keys write on /admin/queues when BULL_BOARD_WRITE=true', async () => {
    const queues = await rawRequest(writablePort, {
      method: 'GET',
      target: '/admin/queues/api/queues',
      headers: bearer(writable.adminKey),
    });
    expect((JSON.parse(queues.body).queues as { readOnlyMode: boolean }[]).some((q) => q.readOnlyMode)).toBe(
      false,
    );
    const pause = await rawRequest(writablePort, {
      method: 'PUT',
      target: '/admin/queues/api/queues/products/pause',
      headers: bearer(writable.adminKey),
    });
    expect(pause.status).toBe(200);
    expect(await writable.api.queues.products.isPaused()).toBe(true);
    const asPms = await rawRequest(writablePort, {
      method: 'PUT',
      target: '/admin/queues/api/queues/products/resume',
      headers: bearer(writable.pmsKey),
    });
    expect(asPms.status).toBe(403);
    await writable.api.queues.products.resume();
  });
});

describe('maintenance jobs', () => {
  it('refuses to prune inside the configured retention, whoever enqueues the job', async () => {
    await ctx.startWorkers(['maintenance']);
    const events = await ctx.api.db('events').count<{ n: number }[]>('* as n');
    const applied = await ctx.api.db('applied_jobs').count<{ n: number }[]>('* as n');
    const tooSoon = [
      ['maintenance.prune-events', { olderThanDays: ctx.config.EVENT_RETENTION_DAYS - 1 }],
      ['maintenance.prune-applied-jobs', { olderThanSeconds: 60 }],
      ['maintenance.prune-job-runs', { olderThanDays: ctx.config.JOB_RUNS_RETENTION_DAYS - 1 }],
    ] as const;
    for (const [name, payload] of tooSoon) {
      const job = await ctx.api.queues.maintenance.add(
        name,
        { payload, meta: { actor: 'someone' } },
        { attempts: 3, jobId: `maintenance-${name}-too-soon` },
      );
      const status = await ctx.waitForJob(job.id!);
      expect(status, name).toMatchObject({ state: 'failed', error: { code: 'inside_retention' } });
      const failed = await ctx.api.queues.maintenance.getJob(job.id!);
      expect(failed?.attemptsMade).toBe(1);
      expect(failed?.failedReason).toMatch(/configured retention/);
    }
    expect(await ctx.api.db('events').count<{ n: number }[]>('* as n')).toEqual(events);
    expect(await ctx.api.db('applied_jobs').count<{ n: number }[]>('* as n')).toEqual(applied);
  });
});
