import net from 'node:net';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { generateSecretsKey } from '../../src/secrets.js';

/**
 * Scratch resources of the benchmarks and the tests: a free port, a throw-away database, the Redis
 * keys of a throw-away queue prefix. Never point these at the live database or prefix.
 */

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Drops the database named in `url` (connections to it are ended), from the server's `postgres` database. */
export async function dropScratchDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const name = decodeURIComponent(target.pathname.slice(1));
    await client.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  } finally {
    await client.end();
  }
}

/**
 * Deletes every Redis key under `prefix:` in batches (a single UNLINK of all keys can overflow the
 * stack). On a cluster (`clusterNodes`), on every master, the hash-tagged keys (`{prefix:…}`) too.
 */
export async function deleteScratchKeys(
  redisUrl: string,
  prefix: string,
  clusterNodes?: { host: string; port: number }[],
): Promise<void> {
  if (!clusterNodes) {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    try {
      await deleteMatching(redis, [`${prefix}:*`], (keys) => redis.unlink(...keys));
    } finally {
      await redis.quit();
    }
    return;
  }
  const cluster = new Cluster(clusterNodes, { redisOptions: { maxRetriesPerRequest: null } });
  try {
    await cluster.ping(); // ready: the masters are known
    await Promise.all(
      cluster.nodes('master').map((node) =>
        // One key per UNLINK: the keys of one batch lie in different slots.
        deleteMatching(node, [`${prefix}:*`, `{${prefix}:*`], async (keys) => {
          const pipeline = node.pipeline();
          for (const key of keys) pipeline.unlink(key);
          await pipeline.exec();
        }),
      ),
    );
  } finally {
    await cluster.quit();
  }
}

async function deleteMatching(
  redis: Redis,
  patterns: string[],
  unlink: (keys: string[]) => Promise<unknown>,
): Promise<void> {
  for (const pattern of patterns) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await unlink(keys);
    } while (cursor !== '0');
  }
}

/**
 * The limits every benchmark sets for itself (docs/security.md): no per-key request rate (they
 * measure throughput, not the limiter), caps on streams and waits above their load, and a
 * throwaway SECRETS_KEY for their scratch database.
 */
export function benchLimits(): Record<string, string> {
  return {
    RATE_LIMIT_PER_SECOND: '0',
    STREAMS_PER_KEY: '10000',
    WAIT_MAX_CONCURRENT: '10000',
    SECRETS_KEY: generateSecretsKey(),
  };
}
