import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** Where the machine's PostgreSQL binaries are (PG_BIN overrides; Debian's layout by default). */
export function postgresBinDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  for (const version of ['17', '16', '15', '14']) {
    const dir = `/usr/lib/postgresql/${version}/bin`;
    if (existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error('no PostgreSQL binaries found: set PG_BIN to the directory holding initdb and pg_ctl');
}

/**
 * A private PostgreSQL cluster for the fault suite: `initdb` into a scratch directory, a spare port
 * on 127.0.0.1, its socket in that directory. It can be restarted (fast shutdown, as an operator or
 * a managed service does) and have its backends terminated, which the machine's shared server must
 * never be. Default settings, max_connections 100 included: the suite runs against what a fresh
 * Postgres allows. Postgres refuses to run as root, so as root it runs as the `postgres` user.
 */
export interface PostgresCluster {
  port: number;
  url(database: string): string;
  start(): Promise<void>;
  /** `pg_ctl stop -m fast`: every session ends, in-flight transactions roll back, then a clean stop. */
  stop(): Promise<void>;
  /** pg_terminate_backend on every client backend but the caller's; resolves with how many. */
  terminateBackends(database: string): Promise<number>;
  query<T extends pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<T[]>;
}

export async function createPostgresCluster(dir: string, port: number): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'postgres.log');
  const asRoot = userInfo().uid === 0;
  await mkdir(dir, { recursive: true });
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  await chmod(dir, 0o700);
  const as = (command: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', path.join(bin, command), ...args], { cwd: '/' })
      : run(path.join(bin, command), args);

  await as('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  // Durable enough for a suite that never crashes the machine: a fast shutdown writes a checkpoint.
  await writeFile(
    path.join(dir, 'extra.conf'),
    [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'full_page_writes = off',
      '',
    ].join('\n'),
  );
  if (asRoot) await run('chown', ['postgres', path.join(dir, 'extra.conf')]);
  await run('sh', [
    '-c',
    `echo "include '${path.join(dir, 'extra.conf')}'" >> ${path.join(data, 'postgresql.conf')}`,
  ]);

  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  const cluster: PostgresCluster = {
    port,
    url,
    async start() {
      await as('pg_ctl', ['start', '-D', data, '-l', log, '-w', '-t', '60']);
    },
    async stop() {
      await as('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '60']);
    },
    async terminateBackends(database) {
      const rows = await cluster.query<{ n: number }>(
        'postgres',
        `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
         where datname = $1 and pid <> pg_backend_pid() and backend_type = 'client backend'`,
        [database],
      );
      return rows[0]?.n ?? 0;
    },
    async query(database, sql, params = []) {
      const client = new pg.Client({ connectionString: url(database) });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
  };
  return cluster;
}
