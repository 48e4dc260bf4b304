import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../scripts/faults/tcp-proxy.js';
import { isLsn, parseLsn } from '../../src/db/wal-position.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { type ReplicatedPostgres, startReplicatedPostgres } from '../helpers/replica-cluster.js';
import { until } from '../helpers/until.js';

/**
 * Reads that may lag on a real streaming replica (a private primary and a `pg_basebackup -R`
 * replica applying every commit 2 s late), over a real socket: a client that sends back the
 * X-Stockflow-LSN of its write never sees a stale answer; one that does not is served by the
 * replica, told how stale the answer may be, and sees the old value while the replica lags.
 */

const applyDelayMs = 2000;
const replicaWaitMs = 1000;
let pg: ReplicatedPostgres;
/** Between the web process and the replica: frozen, the replica hangs without an error. */
let link: TcpProxy;
let ctx: TestContext;
let base: string;

beforeAll(async () => {
  pg = await startReplicatedPostgres({ applyDelay: `${applyDelayMs}ms` });
  link = await startTcpProxy(pg.replica.port);
  const replicaUrl = new URL(pg.replicaUrl);
  replicaUrl.port = String(link.port);
  ctx = await createTestContext({
    databaseUrl: pg.primaryUrl,
    // Well under the 2 s delay, and long enough for a position query on a loaded machine.
    env: { DATABASE_REPLICA_URL: replicaUrl.toString(), REPLICA_WAIT_MS: String(replicaWaitMs) },
    workers: ['products', 'inventory'],
  });
  base = await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const created = await call('POST', '/api/pms/products', {
    body: { sku: 'RR-1', name: 'RR-1', price: { amount: 100, currency: 'EUR' } },
    headers: { prefer: 'wait=10' },
  });
  expect(created.status).toBe(201);
}, 60_000);

afterAll(async () => {
  link?.thaw();
  await ctx?.close();
  await link?.close();
  await pg?.close();
});

async function call(
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ctx.pmsKey}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

/** Adjusts RR-1 by `delta` and waits for the job: the movement's id and the answer's position. */
async function adjust(delta: number): Promise<{ movementId: number; lsn: string }> {
  const res = await call('POST', '/api/pms/inventory/adjust', {
    body: { movements: [{ sku: 'RR-1', location: 'default', delta, reason: 'received' }] },
    headers: { prefer: 'wait=10' },
  });
  expect(res.status).toBe(200);
  const lsn = res.headers.get('x-stockflow-lsn');
  expect(isLsn(lsn ?? '')).toBe(true);
  return { movementId: res.body.movements[0].id, lsn: lsn! };
}

const history = (headers: Record<string, string> = {}, query = '') =>
  call('GET', `/api/pms/inventory/history?sku=RR-1${query}`, { headers });
const idsOf = (res: { body: { items: { id: number }[] } }) => res.body.items.map((m) => m.id);

/** Until the replica has replayed up to `lsn`: after this, the replica shows that write. */
const replicaReaches = (lsn: string) =>
  until(
    `replica replays up to ${lsn}`,
    () => pg.replayed(),
    (replayed) => parseLsn(replayed) >= parseLsn(lsn),
    20_000,
    50,
  );

describe('read-your-writes across the primary and the replica', () => {
  it('a read that sends back the position of its write sees the write, from the primary until the replica has it', async () => {
    const { movementId, lsn } = await adjust(5);
    // The replica applies the commit 2 s late and the read waits 1 s for it: the primary serves.
    const soon = await history({ 'x-stockflow-lsn': lsn });
    expect(soon.status).toBe(200);
    expect(idsOf(soon)).toContain(movementId);
    expect(['primary', 'replica']).toContain(soon.headers.get('x-stockflow-read-from'));
    if (soon.headers.get('x-stockflow-read-from') === 'replica') {
      expect(parseLsn(await pg.replayed())).toBeGreaterThanOrEqual(parseLsn(lsn));
    }

    await replicaReaches(lsn);
    for (const res of [await history({ 'x-stockflow-lsn': lsn }), await history({}, `&lsn=${lsn}`)]) {
      expect(res.headers.get('x-stockflow-read-from')).toBe('replica');
      expect(idsOf(res)).toContain(movementId);
    }
  });

  it('a 202 carries no position; the completed job does, and a read with it sees the job’s write', async () => {
    const accepted = await call('POST', '/api/pms/inventory/adjust', {
      body: { movements: [{ sku: 'RR-1', location: 'default', delta: 2, reason: 'received' }] },
    });
    expect(accepted.status).toBe(202);
    expect(accepted.headers.get('x-stockflow-lsn')).toBeNull();
    const done = await until(
      'the job completes',
      () => call('GET', `/api/jobs/${accepted.body.id}`),
      (res) => res.body.state === 'completed',
    );
    const lsn = done.headers.get('x-stockflow-lsn');
    expect(isLsn(lsn ?? '')).toBe(true);
    const res = await history({ 'x-stockflow-lsn': lsn! });
    expect(idsOf(res)).toContain(done.body.result.movements[0].id);
  });

  it('a malformed position is a 400 problem', async () => {
    const res = await history({ 'x-stockflow-lsn': 'not-a-position' });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('validation_failed');
  });
});

describe('reads without a position', () => {
  it('are served by the replica, say how stale they may be, and show the old value while it lags', async () => {
    // The feed records a horizon with its position; the API's own write (an ack) answers a later one.
    expect((await call('GET', '/api/pms/events')).status).toBe(200);
    const ack = await call('POST', '/api/pms/sync/ack', { body: { consumer: 'replica-test', seq: 0 } });
    expect(ack.status).toBe(200);
    const acked = ack.headers.get('x-stockflow-lsn');
    expect(isLsn(acked ?? '')).toBe(true);
    const before = await adjust(1);
    await replicaReaches(before.lsn);

    // Replay paused: whatever the machine's load, the replica cannot show what comes next.
    await pg.pauseReplay();
    try {
      const after = await adjust(7);
      const stale = await history();
      expect(stale.headers.get('x-stockflow-read-from')).toBe('replica');
      expect(idsOf(stale)).toContain(before.movementId);
      expect(idsOf(stale)).not.toContain(after.movementId);
      // Every commit the replica replayed was applied 2 s after it was made, before the pause.
      expect(Number(stale.headers.get('x-stockflow-replica-lag-ms'))).toBeGreaterThanOrEqual(applyDelayMs);

      const fresh = await history({ 'x-stockflow-lsn': after.lsn });
      expect(fresh.headers.get('x-stockflow-read-from')).toBe('primary');
      expect(fresh.headers.get('x-stockflow-replica-lag-ms')).toBeNull();
      expect(idsOf(fresh)).toContain(after.movementId);

      // A report reads one snapshot of the replica: its newest ledger row is the one before.
      const report = await call('GET', '/api/pms/reports/movements?sku=RR-1');
      const ownReport = await call('GET', '/api/pms/reports/movements?sku=RR-1', {
        headers: { 'x-stockflow-lsn': after.lsn },
      });
      expect(report.headers.get('x-stockflow-read-from')).toBe('replica');
      expect(report.body.asOf.movementId).toBe(before.movementId);
      expect(ownReport.headers.get('x-stockflow-read-from')).toBe('primary');
      expect(ownReport.body.asOf.movementId).toBe(after.movementId);

      // The feed pages up to a horizon the replica holds whole: an older head, without the new event.
      const feed = await call('GET', '/api/pms/events?limit=1000');
      const ownFeed = await call('GET', '/api/pms/events?limit=1000', {
        headers: { 'x-stockflow-lsn': after.lsn },
      });
      const movedIn = (res: typeof feed) =>
        res.body.items
          .filter((e: { type: string }) => e.type === 'stock.moved')
          .map((e: { data: { movementId: number } }) => e.data.movementId);
      expect(feed.headers.get('x-stockflow-read-from')).toBe('replica');
      expect(Number(feed.headers.get('x-stockflow-replica-lag-ms'))).toBeGreaterThanOrEqual(applyDelayMs);
      expect(ownFeed.headers.get('x-stockflow-read-from')).toBe('primary');
      expect(movedIn(ownFeed)).toContain(after.movementId);
      expect(movedIn(feed)).not.toContain(after.movementId);
      expect(feed.body.headSeq).toBeLessThan(ownFeed.body.headSeq);
      expect(feed.body.nextAfter).toBe(feed.body.headSeq);
    } finally {
      await pg.resumeReplay();
    }
  });

  it('go to the primary at once while the replica hangs, after one wait', async () => {
    link.freeze();
    try {
      const first = await history();
      expect(first.status).toBe(200);
      expect(first.headers.get('x-stockflow-read-from')).toBe('primary');
      // The wait is not paid again by the reads of the next second.
      const startedAt = Date.now();
      const next = await history();
      expect(next.headers.get('x-stockflow-read-from')).toBe('primary');
      expect(Date.now() - startedAt).toBeLessThan(replicaWaitMs);
    } finally {
      link.thaw();
    }
    await until(
      'reads go to the replica again',
      () => history(),
      (res) => res.headers.get('x-stockflow-read-from') === 'replica',
    );
  });

  it('go to the primary while the replica is away', async () => {
    await pg.replica.stop();
    const res = await history();
    expect(res.status).toBe(200);
    expect(res.headers.get('x-stockflow-read-from')).toBe('primary');
    expect(res.headers.get('x-stockflow-replica-lag-ms')).toBeNull();
  });
});
