import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { queueNames, queueReadScopes } from '../../src/queues/job.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

/**
 * Security report, finding 3: a pms key read admin-queue jobs (webhook deliveries, maintenance)
 * through `GET /api/jobs/:id`, their ids being derived from ids in the pms feed. Each queue names
 * the scope that may read its jobs; to any other key such a job does not exist (404, the same
 * answer as an unknown id). Over a real socket, plain and percent-encoded.
 */

let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext();
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(() => ctx.close());

const read = async (target: string, key: string) => {
  const response = await rawRequest(port, {
    method: 'GET',
    target,
    headers: { authorization: `Bearer ${key}` },
  });
  return { status: response.status, body: JSON.parse(response.body) as Record<string, unknown> };
};

/** What does not depend on the id or the request: the shape a caller could compare. */
const shape = ({ status, body }: { status: number; body: Record<string, unknown> }) => ({
  status,
  code: body.code,
  title: body.title,
  detail: String(body.detail).replace(/Job \S+ /, 'Job <id> '),
});

it('declares a read scope for every queue', () => {
  expect(Object.keys(queueReadScopes).sort()).toEqual([...queueNames].sort());
  expect(queueReadScopes.webhooks).toBe('admin');
  expect(queueReadScopes.maintenance).toBe('admin');
});

it('answers a pms key 404 for webhook and maintenance jobs, exactly as for an unknown id; admin reads them', async () => {
  const meta = { actor: 'test' };
  await ctx.api.queues.webhooks.add(
    'webhook.deliver',
    { payload: { endpointId: 'e', eventId: 'v', cause: 'new' }, meta },
    { jobId: 'webhooks-scope-1', delay: 3_600_000 },
  );
  await ctx.api.queues.maintenance.add(
    'maintenance.relay-outbox',
    { payload: {}, meta },
    { jobId: 'maintenance-scope-1', delay: 3_600_000 },
  );
  const own = await ctx.request({
    method: 'POST',
    url: '/api/pms/locations',
    payload: { code: 'scope-loc', name: 'Scope' },
  });
  expect(own.statusCode).toBe(202);
  const ownId = json(own).id as string;

  const unknown = shape(await read('/api/jobs/webhooks-never-was', ctx.pmsKey));
  expect(unknown).toMatchObject({ status: 404, code: 'not_found' });
  for (const target of [
    '/api/jobs/webhooks-scope-1',
    '/api/jobs/%77ebhooks-scope-1',
    '/api/jobs/webhooks%2Dscope-1',
    '/api/jobs/maintenance-scope-1',
  ]) {
    expect(shape(await read(target, ctx.pmsKey)), target).toEqual(unknown);
  }
  for (const id of ['webhooks-scope-1', 'maintenance-scope-1', ownId]) {
    const admin = await read(`/api/jobs/${id}`, ctx.adminKey);
    expect(admin.status, id).toBe(200);
    expect(admin.body.id).toBe(id);
  }
  // The PMS still reads its own jobs.
  const mine = await read(`/api/jobs/${ownId}`, ctx.pmsKey);
  expect(mine.status).toBe(200);
  expect(mine.body).toMatchObject({ id: ownId, queue: 'inventory' });
});
