import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Cluster, type Redis } from 'ioredis';
import { RedisServer } from './redis-servers.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a port can be listened on at 127.0.0.1 right now. */
async function canListen(port: number): Promise<boolean> {
  const server = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise((resolve) => server.close(resolve));
  return ok;
}

/**
 * `count` ports on 127.0.0.1 free a moment ago, each with its cluster bus port (+10000) free too
 * (kernel-chosen ports can sit above 55535, where the bus port would not exist).
 */
export async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (ports.includes(port) || ports.includes(port + 10_000) || ports.includes(port - 10_000)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) ports.push(port);
  }
  return ports;
}

/** One line of `CLUSTER NODES`: a node's port, flags, its master's id (replicas) and its slot ranges. */
export interface ClusterNodeInfo {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: [number, number][];
}

export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, masterId, , , , , ...slots] = line.trim().split(' ');
      return {
        id: id!,
        port: Number(/:(\d+)@/.exec(address!)?.[1]),
        flags: flags!.split(','),
        masterId: masterId!,
        slots: slots
          .filter((range) => !range.startsWith('['))
          .map((range) => {
            const [from, to = from] = range.split('-').map(Number);
            return [from!, to!] as [number, number];
          }),
      };
    });
}

/**
 * A Redis Cluster of the suite's own on loopback: `masters` masters with `replicas` replica(s)
 * each, every node a RedisServer (AOF on, `noeviction`, its own directory holding its AOF and its
 * `nodes.conf`), built with `redis-cli --cluster create`. A node can be killed, paused and started
 * again from its directory: it rejoins the cluster with the identity its `nodes.conf` keeps.
 */
export class RedisCluster {
  readonly nodes: RedisServer[];

  constructor(
    readonly dir: string,
    ports: number[],
    fsync: 'always' | 'everysec',
    readonly replicas: 0 | 1,
    /** How long a node may not answer before the others mark it failed (`cluster-node-timeout`). */
    readonly nodeTimeoutMs: number,
  ) {
    this.nodes = ports.map(
      (port) =>
        new RedisServer(`redis-${port}`, port, path.join(dir, `redis-${port}`), fsync, undefined, [
          ...['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
          ...['--cluster-node-timeout', String(nodeTimeoutMs)],
        ]),
    );
  }

  static async create(
    dir: string,
    options: { masters: number; replicas: 0 | 1; fsync: 'always' | 'everysec'; nodeTimeoutMs: number },
  ): Promise<RedisCluster> {
    const ports = await clusterPorts(options.masters * (1 + options.replicas));
    await mkdir(dir, { recursive: true });
    return new RedisCluster(dir, ports, options.fsync, options.replicas, options.nodeTimeoutMs);
  }

  /** `127.0.0.1:port,…` of every node: REDIS_CLUSTER_NODES. */
  get addresses(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  node(port: number): RedisServer {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no cluster node on ${port}`);
    return node;
  }

  /** Starts every node, joins them (masters first, as `--cluster create` assigns) and waits for `cluster_state:ok`. */
  async start(): Promise<void> {
    for (const node of this.nodes) await node.start();
    await run('redis-cli', [
      '--cluster',
      'create',
      ...this.nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      String(this.replicas),
      '--cluster-yes',
    ]);
    for (const node of this.nodes) await this.waitFor(node, (info) => /cluster_state:ok/.test(info), 30_000);
    // Every replica attached and in sync before anything runs on the cluster.
    for (const master of await this.masters()) await this.waitForSync(master.port);
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) {
      node.resume();
      await node.stop().catch(() => undefined);
    }
  }

  /** `CLUSTER NODES` as one live node (other than `except`) sees it. */
  async view(except: number[] = []): Promise<ClusterNodeInfo[]> {
    for (const node of this.nodes) {
      if (!node.child || except.includes(node.port)) continue;
      const text = await node
        .admin((r) => r.call('CLUSTER', 'NODES') as Promise<string>)
        .catch(() => undefined);
      if (text) return parseClusterNodes(text);
    }
    throw new Error('no cluster node answers CLUSTER NODES');
  }

  async masters(except: number[] = []): Promise<ClusterNodeInfo[]> {
    return (await this.view(except)).filter((n) => n.flags.includes('master') && !n.flags.includes('fail'));
  }

  /** The master serving `slot`, as the live nodes see it. */
  async masterOf(slot: number, except: number[] = []): Promise<ClusterNodeInfo> {
    const master = (await this.masters(except)).find((n) =>
      n.slots.some(([from, to]) => slot >= from && slot <= to),
    );
    if (!master) throw new Error(`no master serves slot ${slot}`);
    return master;
  }

  async replicasOf(masterId: string, except: number[] = []): Promise<ClusterNodeInfo[]> {
    return (await this.view(except)).filter((n) => n.masterId === masterId);
  }

  /** Waits until the master's replicas have every write (replication offsets equal, at most `ms`). */
  async waitForSync(masterPort: number, ms = 20_000): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const info = await this.node(masterPort)
        .admin((r) => r.info('replication'))
        .catch(() => '');
      const offsets = [...info.matchAll(/slave\d+:.*?offset=(\d+)/g)].map((m) => Number(m[1]));
      const own = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
      if (this.replicas === 0 || (offsets.length > 0 && offsets.every((o) => o === own))) return true;
      await sleep(20);
    }
    return false;
  }

  /** Resolves with the ms it took until `node`'s `CLUSTER INFO` (or, with `replication`, INFO) matches. */
  async waitFor(node: RedisServer, test: (info: string) => boolean, ms: number, replication = false) {
    const from = Date.now();
    for (;;) {
      const info = await node
        .admin((r) => (replication ? r.info('replication') : (r.call('CLUSTER', 'INFO') as Promise<string>)))
        .catch(() => '');
      if (test(info)) return Date.now() - from;
      if (Date.now() - from > ms) throw new Error(`${node.name}: not as expected within ${ms} ms:\n${info}`);
      await sleep(50);
    }
  }

  /** A short-lived cluster client of the suite's own (never one of the platform's). */
  async admin<T>(use: (cluster: Redis | Cluster) => Promise<T>): Promise<T> {
    const seeds = this.nodes.filter((n) => n.child).map((n) => ({ host: '127.0.0.1', port: n.port }));
    const cluster = new Cluster(seeds, {
      lazyConnect: true,
      enableOfflineQueue: true,
      clusterRetryStrategy: () => null,
      redisOptions: { maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 2000 },
    });
    cluster.on('error', () => undefined);
    try {
      await cluster.connect();
      return await use(cluster);
    } finally {
      cluster.disconnect();
    }
  }

  /** Process ids of the running nodes (CPU accounting). */
  pids(): number[] {
    return this.nodes.flatMap((n) => (n.child?.pid ? [n.child.pid] : []));
  }
}
