import { keySlot } from '../../src/redis-keys.js';
import type { FaultWindow } from './checker.js';
import { burst, type Fault, queueKey, type Rig, whenActive } from './faults.js';
import type { ClusterNodeInfo } from './redis-cluster.js';

/**
 * The Redis faults of the cluster topology (TOPOLOGY=cluster: 3 masters with a replica each, AOF
 * `always`, the platform on REDIS_CLUSTER_NODES). Each picks the master of a busy queue, so the
 * fault lands where the load is.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const queues = ['inventory', 'products', 'orders', 'inbound', 'reorder', 'maintenance', 'images', 'webhooks'];

/** The master serving `queue`, its replica, and every queue that master serves. */
async function masterOfQueue(rig: Rig, queue: string) {
  const cluster = rig.cluster!;
  const owns = (node: ClusterNodeInfo, q: string) => {
    const slot = keySlot(queueKey(rig, q, 'wait'));
    return node.slots.some(([from, to]) => slot >= from && slot <= to);
  };
  const master = await cluster.masterOf(keySlot(queueKey(rig, queue, 'wait')));
  const [replica] = await cluster.replicasOf(master.id);
  if (!replica) throw new Error(`master ${master.port} has no replica`);
  return { master, replica, queues: queues.filter((q) => owns(master, q)) };
}

/** Waits until `port` reports itself master (INFO replication), at most 60 s; resolves with the ms. */
async function promoted(rig: Rig, port: number): Promise<number> {
  const cluster = rig.cluster!;
  return cluster.waitFor(cluster.node(port), (info) => /role:master/.test(info), 60_000, true);
}

/** Waits until `port` is a replica with its link to its master up, at most 60 s; resolves with the ms. */
async function rejoined(rig: Rig, port: number): Promise<number> {
  const cluster = rig.cluster!;
  return cluster.waitFor(
    cluster.node(port),
    (info) => /role:slave/.test(info) && /master_link_status:up/.test(info),
    60_000,
    true,
  );
}

const windowOf = (name: string, at: number, healedAt = at): FaultWindow => ({
  name,
  at,
  healedAt,
  measure: 'jobs',
  notes: [],
});

export const clusterFaults: Fault[] = [
  {
    name: 'cluster-master-kill',
    topology: 'cluster',
    async run(rig) {
      const cluster = rig.cluster!;
      const { master, replica, queues: held } = await masterOfQueue(rig, 'inventory');
      // In sync before the burst, as an operator's cluster is; the burst's writes then race the kill.
      await cluster.waitForSync(master.port);
      burst(rig, 60, { wait: false });
      const active = await whenActive(rig, ['inventory'], 3, 3000);
      const at = Date.now();
      const victim = cluster.node(master.port);
      await victim.kill();
      const promotedMs = await promoted(rig, replica.port);
      await victim.start();
      const rejoinMs = await rejoined(rig, victim.port);
      const window = windowOf('cluster-master-kill', at);
      window.notes.push(
        `kill -9 of master ${master.port} (queues ${held.join(', ')}) with ${active} inventory jobs active; ` +
          `its replica ${replica.port} promoted after ${promotedMs} ms; the killed node restarted from its AOF ` +
          `and rejoined as a replica in ${rejoinMs} ms more`,
      );
      return window;
    },
  },
  {
    name: 'cluster-node-stall',
    topology: 'cluster',
    async run(rig) {
      const cluster = rig.cluster!;
      // The master of the orders queue: its connections hang (no answer, no error) until it is resumed.
      const { master, replica, queues: held } = await masterOfQueue(rig, 'orders');
      const ms = rig.short ? 15_000 : 30_000;
      await cluster.waitForSync(master.port);
      const at = Date.now();
      const victim = cluster.node(master.port);
      victim.pause();
      const promotedMs = await promoted(rig, replica.port);
      await sleep(Math.max(0, ms - (Date.now() - at)));
      victim.resume();
      const healedAt = Date.now();
      const rejoinMs = await rejoined(rig, victim.port);
      const window = windowOf('cluster-node-stall', at, healedAt);
      window.notes.push(
        `master ${master.port} (queues ${held.join(', ')}) paused (SIGSTOP) for ${((healedAt - at) / 1000).toFixed(0)} s; ` +
          `its replica ${replica.port} promoted after ${promotedMs} ms; resumed, it rejoined as a replica in ${rejoinMs} ms`,
      );
      return window;
    },
  },
];
