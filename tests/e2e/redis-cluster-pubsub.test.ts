import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { publishFinished } from '../../src/queues/finished-signal.js';
import { useScratchCluster } from '../helpers/scratch-redis.js';
import { until } from '../helpers/until.js';

/**
 * The web process's pub/sub connection on a Redis Cluster (REDIS_CLUSTER_NODES): it sits on one
 * node the cluster client picked. When that node is killed (-9), the signals it carries (finished
 * jobs for `Prefer: wait`, API key changes) must reach the process again through another node,
 * with every channel subscribed there. No workers: this is about the subscriber alone
 * (tests/e2e/redis-cluster-failover.test.ts follows the queues through a failover).
 */
const rig = useScratchCluster();

/** The node the web process's pub/sub connection is on (ioredis names it `ioredis-cluster(subscriber):<ours>`). */
async function subscriberNode(): Promise<number | undefined> {
  for (const { port, child } of rig.cluster.servers) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const redis = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await redis.connect();
      const clients = (await redis.client('LIST')) as string;
      if (/name=\S*\(subscriber\):stockflow-subscriber/.test(clients)) return port;
    } finally {
      redis.disconnect();
    }
  }
  return undefined;
}

/** Whether a finished-job signal published now reaches the web process's listener (within 1.5 s). */
async function signalArrives(jobId: string): Promise<boolean> {
  const watch = rig.ctx.api.finished.watch(jobId);
  try {
    await publishFinished(rig.ctx.api.redis, rig.ctx.config.QUEUE_PREFIX, jobId);
    const from = Date.now();
    await watch.next(3000);
    return Date.now() - from < 1500;
  } finally {
    watch.stop();
  }
}

it('moves the pub/sub subscriber off a killed node: finished-job signals arrive again', async () => {
  const port = await subscriberNode();
  expect(port).toBeDefined();
  expect(await signalArrives('CP-before')).toBe(true);
  const victim = rig.cluster.servers.find((s) => s.port === port)!.child;
  const gone = new Promise((resolve) => victim.once('exit', resolve));
  victim.kill('SIGKILL');
  await gone;
  let n = 0;
  await until(
    'a finished-job signal reaches the web process again',
    () => signalArrives(`CP-after-${n++}`),
    (arrived) => arrived,
    30_000,
    100,
  );
  const moved = await subscriberNode();
  expect(moved).toBeDefined();
  expect(moved).not.toBe(port);
  // The killed node back, so the context's clean-up finds every node of the cluster it knows.
  await rig.cluster.restart(port!);
  for (const { port: node } of rig.cluster.servers)
    await until(
      `node ${node} sees the cluster whole`,
      async () => {
        const redis = new Redis(node, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
        try {
          await redis.connect();
          return (await redis.call('CLUSTER', 'INFO')) as string;
        } finally {
          redis.disconnect();
        }
      },
      (info) => /cluster_state:ok/.test(info),
      30_000,
      100,
    );
}, 60_000);
