import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { keySlot, redisKeys } from '../../src/redis-keys.js';
import { json } from '../helpers/context.js';
import { useScratchCluster } from '../helpers/scratch-redis.js';
import { until } from '../helpers/until.js';

/**
 * Redis Cluster failover (REDIS_CLUSTER_NODES): 3 masters with a replica each on spare ports. The
 * master holding the products queue is killed (-9) once its replica has every write; the replica
 * takes over, and the web and worker connections follow it: every job acknowledged before and
 * after the kill completes, once (a replica promoted with writes it never received would lose
 * them, as with Sentinel: docs/reliability.md).
 */
// A worker whose fetch loop hangs after the failover (src/workers/watchdog.ts) is replaced
// within 3 s instead of the default 20.
const rig = useScratchCluster({ env: { WORKER_WATCHDOG_MS: '3000' }, workers: ['products'] });

async function onNode<T>(port: number, use: (r: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

/** `CLUSTER NODES` as seen from `port`: each node's port, flags and the slot ranges it serves. */
async function clusterNodes(port: number) {
  const text = (await onNode(port, (r) => r.call('CLUSTER', 'NODES'))) as string;
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, masterId, , , , , ...slots] = line.split(' ');
      return {
        id: id!,
        port: Number(/:(\d+)@/.exec(address!)?.[1]),
        flags: flags!.split(','),
        masterId: masterId!,
        owns: (slot: number) =>
          slots.some((range) => {
            const [from, to = from] = range.split('-').map(Number);
            return slot >= from! && slot <= to!;
          }),
      };
    });
}

/** Every answer to a submission: around a failover only a 202 or a 503 (problem+json) may come. */
const answers: { status: number; type: string }[] = [];

/** Submits a product and resolves with its job id once acknowledged (202), retrying refusals (503) meanwhile. */
async function submit(sku: string): Promise<string> {
  const accepted = await until(
    `submit ${sku}`,
    async () => {
      const res = await rig.ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: { 'idempotency-key': sku },
        payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
      });
      answers.push({ status: res.statusCode, type: String(res.headers['content-type'] ?? '') });
      return res;
    },
    (res) => res.statusCode === 202,
    30_000,
    100,
  );
  return json(accepted).id as string;
}

it('follows a killed master to its promoted replica: every acknowledged job completes once', async () => {
  const slot = keySlot(`${redisKeys(rig.ctx.config).queuePrefix('products')}:products:wait`);
  const anyPort = rig.cluster.servers[0]!.port;
  const nodes = await clusterNodes(anyPort);
  const master = nodes.find((n) => n.flags.includes('master') && n.owns(slot))!;
  const replica = nodes.find((n) => n.masterId === master.id)!;
  expect(replica).toBeDefined();

  const before = await Promise.all(Array.from({ length: 20 }, (_, i) => submit(`CF-A-${i}`)));
  for (const id of before) expect((await rig.ctx.waitForJob(id)).state).toBe('completed');
  // The replica has every write (offsets equal) before the kill: what it takes over is complete.
  await until(
    'the replica is in sync',
    async () => {
      const info = await onNode(master.port, (r) => r.info('replication'));
      const offsets = [...info.matchAll(/slave\d+:.*?offset=(\d+)/g)].map((m) => Number(m[1]));
      return { offsets, master: Number(/master_repl_offset:(\d+)/.exec(info)?.[1]) };
    },
    ({ offsets, master }) => offsets.length > 0 && offsets.every((o) => o === master),
    20_000,
    50,
  );

  rig.cluster.servers.find((s) => s.port === master.port)!.child.kill('SIGKILL');
  await until(
    'the replica is promoted',
    async () => (await clusterNodes(replica.port)).find((n) => n.id === replica.id)!.flags,
    (flags) => flags.includes('master'),
    30_000,
    100,
  );

  // Submissions during and after the failover: refused (503) until the client finds the new
  // master, then acknowledged and run by the same workers.
  const after: string[] = [];
  for (let i = 0; i < 20; i++) after.push(await submit(`CF-B-${i}`));
  // Never a 500: the cluster client's "Too many Cluster redirections" (its retries ran out while
  // the slot had no master) is Redis being away, as a closed connection is.
  expect(answers.filter((a) => a.status !== 202 && a.status !== 503)).toEqual([]);
  for (const refused of answers.filter((a) => a.status === 503))
    expect(refused.type).toContain('application/problem+json');
  for (const id of [...before, ...after])
    expect((await rig.ctx.waitForJob(id, 30_000)).state).toBe('completed');
  const created = await rig.ctx.api.db('products').where('sku', 'like', 'CF-%').count<{ count: string }[]>();
  expect(Number(created[0]!.count)).toBe(40);
  const events = await rig.ctx.api
    .db('events')
    .where('aggregate_id', 'like', 'CF-%')
    .count<{ count: string }[]>();
  expect(Number(events[0]!.count)).toBe(40);
}, 120_000);
