import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../scripts/bench/scratch.js';
import {
  createPostgresCluster,
  createStandby,
  type PostgresCluster,
} from '../../scripts/faults/postgres-cluster.js';
import { parseConfig } from '../../src/config.js';
import { prepareDatabase } from '../../src/db/migrate.js';

/**
 * A private primary (wal_level replica) with the platform's database migrated, and a streaming
 * replica of it from `pg_basebackup -R` that applies every commit `applyDelay` late
 * (`recovery_min_apply_delay`): lag is certain, not a race. Both on spare loopback ports, in one
 * scratch directory that `close()` removes.
 */
export interface ReplicatedPostgres {
  primary: PostgresCluster;
  replica: PostgresCluster;
  /** The platform's database on each. */
  primaryUrl: string;
  replicaUrl: string;
  /** The position the replica has replayed up to (`pg_last_wal_replay_lsn()`). */
  replayed(): Promise<string>;
  /** Stops and resumes replay (`pg_wal_replay_pause()`): nothing more shows on the replica meanwhile. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  close(): Promise<void>;
}

const database = 'stockflow';

export async function startReplicatedPostgres(options: { applyDelay: string }): Promise<ReplicatedPostgres> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-replica-'));
  // As root, Postgres runs as its own user: it must reach the clusters' directories inside.
  await chmod(dir, 0o755);
  const started: PostgresCluster[] = [];
  const close = async () => {
    for (const cluster of started.reverse()) await cluster.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const primary = await createPostgresCluster(path.join(dir, 'primary'), await freePort(), {
      wal_level: 'replica',
      max_wal_senders: 4,
    });
    await primary.start();
    started.push(primary);
    // Migrated before the base backup: the replica starts with the schema.
    await prepareDatabase(parseConfig({ NODE_ENV: 'test', DATABASE_URL: primary.url(database) }));
    const replica = await createStandby(primary, path.join(dir, 'replica'), await freePort(), {
      recovery_min_apply_delay: options.applyDelay,
    });
    await replica.start();
    started.push(replica);
    const replayControl = (sql: string) => replica.query(database, sql).then(() => undefined);
    return {
      primary,
      replica,
      primaryUrl: primary.url(database),
      replicaUrl: replica.url(database),
      async replayed() {
        const rows = await replica.query<{ lsn: string }>(
          database,
          'select pg_last_wal_replay_lsn()::text as lsn',
        );
        return rows[0]!.lsn;
      },
      pauseReplay: () => replayControl('select pg_wal_replay_pause()'),
      resumeReplay: () => replayControl('select pg_wal_replay_resume()'),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
