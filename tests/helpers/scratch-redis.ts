import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { clusterPorts } from '../../scripts/faults/redis-cluster.js';
import type { RedisClient } from '../../src/connections.js';
import { type ContextOptions, createTestContext, type TestContext, waitForOutput } from './context.js';

const run = promisify(execFile);

/**
 * A redis-server of the test file's own on 127.0.0.1:`port` that keeps nothing (no RDB, no AOF):
 * a test that stops Redis stops only its own. Resolves once it accepts connections.
 */
export async function startScratchRedis(port: number, extraArgs: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout.on('data', () => undefined);
  await waitForOutput(child, /Ready to accept connections/);
  return child;
}

export interface ScratchCluster {
  /** `127.0.0.1:port,…` of every node, for REDIS_CLUSTER_NODES. */
  nodes: string;
  /** Each node's port and process, masters first (as `redis-cli --cluster create` assigns them). */
  servers: { port: number; child: ChildProcess }[];
  /** Starts a killed node again from its node file: it rejoins the cluster (a replica, if it was replaced). */
  restart(port: number): Promise<void>;
  stop(): Promise<void>;
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

/**
 * A Redis Cluster of the test run's own: `masters` masters (and `replicas` replicas of each) on
 * spare loopback ports, their node files in a temporary directory, keeping nothing else. Resolves
 * once every node reports `cluster_state:ok`; `stop()` ends the servers and removes the directory.
 */
export async function startScratchCluster(
  options: { masters?: number; replicas?: 0 | 1 } = {},
): Promise<ScratchCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-cluster-'));
  const ports = await clusterPorts(masters * (1 + replicas));
  const servers: ScratchCluster['servers'] = [];
  const stop = async () => {
    for (const { child } of servers) child.kill('SIGTERM');
    await Promise.all(servers.map(({ child }) => exited(child)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const startNode = (port: number) =>
      startScratchRedis(port, [
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`],
        ...['--cluster-node-timeout', '2000', '--dir', dir],
      ]);
    for (const port of ports) servers.push({ port, child: await startNode(port) });
    const addresses = ports.map((port) => `127.0.0.1:${port}`);
    await run('redis-cli', [
      '--cluster',
      'create',
      ...addresses,
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ]);
    // Wait for the state, not a time: every node agrees the slots are covered (and replicas are in sync).
    for (const port of ports) {
      for (;;) {
        const { stdout } = await run('redis-cli', ['-p', String(port), 'cluster', 'info']);
        if (/cluster_state:ok/.test(stdout)) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const restart = async (port: number) => {
      const server = servers.find((s) => s.port === port);
      if (!server) throw new Error(`no cluster node on ${port}`);
      await exited(server.child);
      server.child = await startNode(port);
    };
    return { nodes: addresses.join(','), servers, restart, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** KEYS `pattern` on one Redis, or on every master of a cluster (KEYS answers for one node only). */
export async function keysMatching(redis: RedisClient, pattern: string): Promise<string[]> {
  if (!(redis instanceof Cluster)) return redis.keys(pattern);
  const perMaster = await Promise.all(redis.nodes('master').map((node) => node.keys(pattern)));
  return perMaster.flat();
}

/**
 * A test file's scratch cluster (3 masters, a replica each) and a test context on it, opened
 * before its tests and closed after them (the context first, so nothing is left talking to
 * stopped nodes). `env` adds settings beside REDIS_CLUSTER_NODES. Read `ctx` and `cluster` in tests.
 */
export function useScratchCluster(options: ContextOptions = {}) {
  const rig = {} as { cluster: ScratchCluster; ctx: TestContext };
  beforeAll(async () => {
    rig.cluster = await startScratchCluster({ replicas: 1 });
    rig.ctx = await createTestContext({
      ...options,
      env: { REDIS_CLUSTER_NODES: rig.cluster.nodes, ...options.env },
    });
  }, 60_000);
  afterAll(async () => {
    try {
      await rig.ctx?.close();
    } finally {
      await rig.cluster?.stop();
    }
  });
  return rig;
}
