import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';

/** Resolves when `child` prints a line matching `pattern` (rejects on exit or after `ms`). */
function waitForLine(child: ChildProcess, pattern: RegExp, ms = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => done(new Error(`no ${pattern} within ${ms} ms:\n${seen.slice(-1500)}`)),
      ms,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (pattern.test(seen)) done();
    };
    const onExit = (code: number | null) =>
      done(new Error(`exited ${code} before ${pattern}:\n${seen.slice(-1500)}`));
    function done(error?: Error) {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    }
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

export const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

/**
 * One redis-server on 127.0.0.1 with its own directory, AOF on (`appendfsync` as given), no RDB
 * snapshots, `noeviction`: a queue Redis as docs/reliability.md asks for. It can be killed (-9),
 * paused (SIGSTOP, as a hung host looks to its clients) and started again from its AOF.
 */
export class RedisServer {
  child?: ChildProcess;
  private readonly log;
  private sizes: { at: number; file: string; size: number }[] = [];
  private sampler?: NodeJS.Timeout;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    private fsync: 'always' | 'everysec',
    private readonly replicaOf?: number,
    /** Further `redis-server` arguments (a cluster node's `--cluster-enabled yes`, …). */
    private readonly extraArgs: string[] = [],
  ) {
    this.log = createWriteStream(path.join(dir, '..', `${name}.log`), { flags: 'a' });
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const args = [
      ...['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir],
      ...['--appendonly', 'yes', '--appendfsync', this.fsync, '--save', ''],
      ...['--maxmemory-policy', 'noeviction', '--protected-mode', 'no'],
      ...(this.replicaOf ? ['--replicaof', '127.0.0.1', String(this.replicaOf)] : []),
      ...this.extraArgs,
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    this.child = child;
    await waitForLine(child, /Ready to accept connections/);
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await exited(child);
    this.child = undefined;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    await exited(child);
    this.child = undefined;
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async setFsync(fsync: 'always' | 'everysec'): Promise<void> {
    this.fsync = fsync;
    await this.admin(async (r) => r.config('SET', 'appendfsync', fsync));
  }

  /** A short-lived admin connection that talks to this server directly (never through a proxy). */
  async admin<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = new Redis(this.port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      return await use(redis);
    } finally {
      redis.disconnect();
    }
  }

  /** The AOF file Redis appends to now (Redis 7 keeps a base and incremental files in appendonlydir). */
  private async currentAof(): Promise<string | undefined> {
    const dir = path.join(this.dir, 'appendonlydir');
    const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.incr.aof'));
    files.sort((a, b) => Number(/\.(\d+)\.incr/.exec(a)?.[1]) - Number(/\.(\d+)\.incr/.exec(b)?.[1]));
    const last = files.at(-1);
    return last ? path.join(dir, last) : undefined;
  }

  /** Samples the AOF's size every 100 ms, so a crash can be cut back to what an fsync a second ago held. */
  startSampling(): void {
    this.sizes = [];
    this.sampler = setInterval(() => {
      void this.currentAof().then(async (file) => {
        if (!file) return;
        const { size } = await stat(file);
        this.sizes.push({ at: Date.now(), file, size });
        if (this.sizes.length > 200) this.sizes.shift();
      });
    }, 100);
  }

  /**
   * A machine crash under `appendfsync everysec`, emulated: kill -9, then cut the AOF back to the
   * size it had `lostMs` ago (what the last fsync held; the page cache with the rest is gone). The
   * cut may end inside a command: Redis drops that tail at load (`aof-load-truncated yes`).
   * Resolves with how many bytes were lost.
   */
  async crashMachine(lostMs: number): Promise<number> {
    const killedAt = Date.now();
    await this.kill();
    clearInterval(this.sampler);
    const file = await this.currentAof();
    if (!file) return 0;
    const { size } = await stat(file);
    const before = [...this.sizes].reverse().find((s) => s.file === file && s.at <= killedAt - lostMs);
    const keep = before?.size ?? size;
    if (keep < size) await truncate(file, keep);
    return size - keep;
  }
}

/**
 * Three Redis Sentinels watching one master (quorum 2), each with its own config file (a sentinel
 * rewrites it). `down-after` is how long the master may not answer before it is taken as down.
 */
export class Sentinels {
  readonly children: ChildProcess[] = [];

  constructor(
    readonly ports: number[],
    readonly dir: string,
    readonly masterName: string,
  ) {}

  async start(masterPort: number, downAfterMs: number): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const log = createWriteStream(path.join(this.dir, 'sentinels.log'), { flags: 'a' });
    for (const port of this.ports) {
      const file = path.join(this.dir, `sentinel-${port}.conf`);
      await writeFile(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          `dir ${this.dir}`,
          `sentinel monitor ${this.masterName} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${this.masterName} ${downAfterMs}`,
          `sentinel failover-timeout ${this.masterName} 10000`,
          `sentinel parallel-syncs ${this.masterName} 1`,
          '',
        ].join('\n'),
      );
      const child = spawn('redis-server', [file, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.pipe(log, { end: false });
      child.stderr.pipe(log, { end: false });
      this.children.push(child);
      await waitForLine(child, /\+monitor master/);
    }
  }

  /** The master's port as the sentinels report it. */
  async masterPort(): Promise<number | undefined> {
    for (const port of this.ports) {
      const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true });
      redis.on('error', () => undefined);
      try {
        await redis.connect();
        const answer = (await redis.call('SENTINEL', 'get-master-addr-by-name', this.masterName)) as
          | string[]
          | null;
        if (answer?.[1]) return Number(answer[1]);
      } catch {
        // the next sentinel
      } finally {
        redis.disconnect();
      }
    }
    return undefined;
  }

  async stop(): Promise<void> {
    for (const child of this.children) child.kill('SIGTERM');
    await Promise.all(this.children.map(exited));
  }
}
