import path from 'node:path';
import { redisKeys } from '../../src/redis-keys.js';
import type { FaultWindow } from './checker.js';
import type { Client } from './client.js';
import type { PlatformProcess } from './platform.js';
import type { PostgresCluster } from './postgres-cluster.js';
import type { WebhookReceiver } from './receiver.js';
import type { RedisCluster } from './redis-cluster.js';
import { RedisServer, Sentinels } from './redis-servers.js';
import type { TcpProxy } from './tcp-proxy.js';

/** Everything the faults act on. */
export interface Rig {
  dir: string;
  pg: PostgresCluster;
  /** The queue Redis the platform uses now (after a failover: the promoted one). On the cluster topology: its first node. */
  redis: RedisServer;
  redisNodes: RedisServer[];
  sentinels?: Sentinels;
  /** The proxy in front of the single Redis (none on the cluster topology). */
  redisProxy?: TcpProxy;
  /** TOPOLOGY=cluster: the Redis Cluster the platform uses (REDIS_CLUSTER_NODES). */
  cluster?: RedisCluster;
  supplierProxy: TcpProxy;
  webs: PlatformProcess[];
  workers: PlatformProcess[];
  receiver: WebhookReceiver;
  client: Client;
  random: () => number;
  short: boolean;
  queuePrefix: string;
  /** Adjusts a reorder sku below its point, so a purchase order is sent during the fault. */
  triggerReorder(): Promise<void>;
  /** Spare ports for new Redis nodes and sentinels. */
  port(): Promise<number>;
  /** Rolls a configuration change out: each process stopped (SIGTERM) and started again. */
  rollingRestart(env: Record<string, string>, note: (text: string, keep?: boolean) => void): Promise<void>;
}

export interface Fault {
  name: string;
  /** Faults that need Redis Sentinel run after the rig moved to it. */
  sentinel?: boolean;
  /** The Redis topology a fault needs (TOPOLOGY); without one it runs on either. */
  topology?: 'single' | 'cluster';
  run(rig: Rig): Promise<FaultWindow>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function windowOf(name: string, measure: FaultWindow['measure'], at: number, healedAt = at): FaultWindow {
  return { name, at, healedAt, measure, notes: [] };
}

/** A burst of inventory adjusts (not awaited), so a worker holds a group-commit batch. */
export function burst(rig: Rig, count: number, options: { wait: boolean; web?: number }) {
  for (let i = 0; i < count; i++) {
    void rig.client.submit({
      kind: 'inventory.adjust',
      method: 'POST',
      path: '/api/pms/inventory/adjust',
      body: {
        movements: [{ sku: `SKU-00${1 + (i % 9)}`, location: 'default', delta: 1, reason: 'correction' }],
      },
      key: `burst-${Date.now()}-${i}`,
      wait: options.wait,
      web: options.web,
    });
  }
}

/** A short-lived admin connection to the queue Redis of the rig (its cluster on the cluster topology). */
function queueRedis<T>(
  rig: Rig,
  use: (r: import('ioredis').Redis | import('ioredis').Cluster) => Promise<T>,
) {
  return rig.cluster ? rig.cluster.admin(use) : rig.redis.admin(use);
}

/** A queue's key as the platform names it (hash-tagged on the cluster: src/redis-keys.ts). */
export function queueKey(rig: Rig, queue: string, suffix: string): string {
  const keys = redisKeys({
    QUEUE_PREFIX: rig.queuePrefix,
    REDIS_CLUSTER_NODES: rig.cluster ? [{ host: '127.0.0.1', port: rig.cluster.nodes[0]!.port }] : undefined,
  });
  return `${keys.queuePrefix(queue as Parameters<typeof keys.queuePrefix>[0])}:${queue}:${suffix}`;
}

export async function activeJobs(rig: Rig, queues: string[]): Promise<number> {
  return queueRedis(rig, async (r) => {
    let n = 0;
    for (const queue of queues) n += await r.llen(queueKey(rig, queue, 'active'));
    return n;
  }).catch(() => -1);
}

/** Polls until at least `min` jobs of these queues are active (at most `ms`); resolves with the count. */
export async function whenActive(rig: Rig, queues: string[], min: number, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let n = 0;
  while (Date.now() < until) {
    n = await activeJobs(rig, queues);
    if (n >= min) return n;
    await sleep(5);
  }
  return n;
}

const queueNames = [
  'products',
  'inventory',
  'orders',
  'inbound',
  'reorder',
  'maintenance',
  'images',
  'webhooks',
];

/**
 * Jobs BullMQ found stalled (their worker's lock expired: a worker died or lost Redis) since
 * `from`, read from each queue's event stream (`<prefix>:<queue>:events`, `stalled` entries).
 */
export async function stalledSince(rig: Rig, from: number): Promise<string> {
  return queueRedis(rig, async (r) => {
    const counts: string[] = [];
    for (const queue of queueNames) {
      const entries = (await r.xrange(queueKey(rig, queue, 'events'), `${from}-0`, '+')) as [
        string,
        string[],
      ][];
      const n = entries.filter(([, fields]) => fields[0] === 'event' && fields[1] === 'stalled').length;
      if (n > 0) counts.push(`${n} ${queue}`);
    }
    return counts.length ? counts.join(', ') : '0';
  }).catch(() => 'unknown (Redis unreachable)');
}

export const faults: Fault[] = [
  {
    name: 'worker-kill',
    async run(rig) {
      const candidates = rig.workers.filter((w) => w.kind === 'worker');
      const victim = candidates[Math.floor(rig.random() * candidates.length)]!;
      burst(rig, 60, { wait: false });
      const active = await whenActive(rig, ['inventory'], 3, 3000);
      const at = Date.now();
      await victim.kill();
      const window = windowOf('worker-kill', 'jobs', at);
      const ready = await victim.start();
      window.notes.push(
        `killed ${victim.name} with ${active} inventory jobs active; restarted, ready in ${ready} ms`,
      );
      return window;
    },
  },
  {
    name: 'web-kill',
    async run(rig) {
      const index = Math.floor(rig.random() * rig.webs.length);
      const victim = rig.webs[index]!;
      burst(rig, 30, { wait: true, web: index });
      burst(rig, 10, { wait: false, web: index });
      await sleep(40);
      const open = rig.client.open[index] ?? 0;
      const at = Date.now();
      await victim.kill();
      const window = windowOf('web-kill', 'jobs', at);
      const ready = await victim.start();
      window.notes.push(
        `killed ${victim.name} with ${open} requests open to it; restarted, ready in ${ready} ms`,
      );
      return window;
    },
  },
  {
    name: 'postgres-restart',
    async run(rig) {
      const at = Date.now();
      await rig.pg.stop();
      await rig.pg.start();
      const window = windowOf('postgres-restart', 'jobs', at, Date.now());
      window.notes.push(`fast shutdown and start took ${Date.now() - at} ms`);
      return window;
    },
  },
  {
    name: 'postgres-terminate',
    async run(rig) {
      // Three rounds, 300 ms apart, each into a burst: transactions, and deliveries being recorded,
      // are cut in the middle.
      const at = Date.now();
      const counts: number[] = [];
      for (let round = 0; round < 3; round++) {
        burst(rig, 20, { wait: false });
        await whenActive(rig, ['inventory', 'webhooks'], 2, 1000);
        counts.push(await rig.pg.terminateBackends('stockflow'));
        await sleep(300);
      }
      const window = windowOf('postgres-terminate', 'jobs', at, Date.now());
      window.notes.push(`terminated every backend three times: ${counts.join(', ')} backends`);
      return window;
    },
  },
  {
    name: 'receiver-503',
    async run(rig) {
      const ms = rig.short ? 10_000 : 30_000;
      const at = Date.now();
      rig.receiver.failing = true;
      await sleep(ms);
      rig.receiver.failing = false;
      const window = windowOf('receiver-503', 'webhooks', at, Date.now());
      window.notes.push(`receiver answered 503 for ${ms / 1000} s`);
      return window;
    },
  },
  {
    name: 'supplier-timeout',
    async run(rig) {
      const ms = rig.short ? 12_000 : 30_000;
      const at = Date.now();
      rig.supplierProxy.freeze();
      await rig.triggerReorder();
      await sleep(ms);
      rig.supplierProxy.thaw();
      const window = windowOf('supplier-timeout', 'suppliers', at, Date.now());
      window.notes.push(`supplier link stalled for ${ms / 1000} s (SUPPLIER_TIMEOUT_MS 10 s)`);
      return window;
    },
  },
  {
    name: 'redis-stall',
    topology: 'single',
    async run(rig) {
      const ms = rig.short ? 20_000 : 60_000;
      const at = Date.now();
      rig.redisProxy!.freeze();
      await sleep(ms);
      rig.redisProxy!.thaw();
      const window = windowOf('redis-stall', 'jobs', at, Date.now());
      window.notes.push(`every platform connection to Redis stalled for ${ms / 1000} s`);
      return window;
    },
  },
  {
    name: 'redis-kill-always',
    topology: 'single',
    async run(rig) {
      await rig.redis.setFsync('always');
      await sleep(2000);
      const at = Date.now();
      await rig.redis.kill();
      await rig.redis.start();
      const window = windowOf('redis-kill-always', 'jobs', at);
      window.notes.push(`kill -9 with appendfsync always; restarted from its AOF in ${Date.now() - at} ms`);
      return window;
    },
  },
  {
    name: 'redis-crash-everysec',
    topology: 'single',
    async run(rig) {
      await rig.redis.setFsync('everysec');
      rig.redis.startSampling();
      await sleep(3000);
      const at = Date.now();
      const lostBytes = await rig.redis.crashMachine(1000);
      await rig.redis.start();
      await rig.redis.setFsync('always');
      const window = windowOf('redis-crash-everysec', 'jobs', at);
      window.notes.push(
        `machine crash emulated under appendfsync everysec: kill -9 and the AOF cut back to its size 1 s earlier (${lostBytes} bytes lost); restarted in ${Date.now() - at} ms`,
      );
      return window;
    },
  },
  {
    name: 'sentinel-failover',
    sentinel: true,
    topology: 'single',
    async run(rig) {
      const sentinels = rig.sentinels!;
      const masterPort = await sentinels.masterPort();
      const master = rig.redisNodes.find((n) => n.port === masterPort)!;
      // Wait until the replica is in sync, as an operator would before a maintenance failover.
      await waitForReplicas(master);
      const at = Date.now();
      master.pause();
      let promoted: number | undefined;
      while (Date.now() - at < 60_000) {
        promoted = await sentinels.masterPort();
        if (promoted && promoted !== masterPort) break;
        await sleep(200);
      }
      const promotedAt = Date.now();
      master.resume();
      rig.redis = rig.redisNodes.find((n) => n.port === promoted) ?? master;
      const window = windowOf('sentinel-failover', 'jobs', at);
      window.notes.push(
        `master ${masterPort} paused (SIGSTOP); sentinels promoted ${promoted} after ${promotedAt - at} ms; old master resumed as a replica`,
      );
      return window;
    },
  },
];

async function waitForReplicas(master: RedisServer): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const info = await master.admin((r) => r.info('replication')).catch(() => '');
    const connected = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
    const offsets = [...info.matchAll(/slave\d+:.*?offset=(\d+)/g)].map((m) => Number(m[1]));
    const master_offset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? 0);
    if (connected > 0 && offsets.every((o) => master_offset - o < 1_000_000)) return;
    await sleep(200);
  }
}

/** Moves the rig to Redis Sentinel: a replica of the current Redis and three sentinels. */
export async function addSentinels(rig: Rig, note: (text: string, keep?: boolean) => void): Promise<void> {
  const replica = new RedisServer(
    'redis-b',
    await rig.port(),
    path.join(rig.dir, 'redis-b'),
    'always',
    rig.redis.port,
  );
  await replica.start();
  rig.redisNodes.push(replica);
  await waitForReplicas(rig.redis);
  const sentinels = new Sentinels(
    [await rig.port(), await rig.port(), await rig.port()],
    path.join(rig.dir, 'sentinels'),
    'stockflow',
  );
  await sentinels.start(rig.redis.port, 3000);
  rig.sentinels = sentinels;
  note(
    `moved to Sentinel: replica on ${replica.port}, sentinels on ${sentinels.ports.join(', ')} (down-after 3 s)`,
    true,
  );
  await rig.rollingRestart(
    {
      REDIS_SENTINELS: sentinels.ports.map((p) => `127.0.0.1:${p}`).join(','),
      REDIS_SENTINEL_NAME: 'stockflow',
    },
    note,
  );
}
