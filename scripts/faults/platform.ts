import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { exited } from './redis-servers.js';

/** One line of the Procfile: its environment assignments and the command after them. */
export interface ProcfileEntry {
  name: string;
  env: Record<string, string>;
  argv: string[];
}

/** Parses the Procfile (`name: VAR=value … command args…`): the suite starts exactly these commands. */
export function readProcfile(repoRoot: string): Map<string, ProcfileEntry> {
  const entries = new Map<string, ProcfileEntry>();
  for (const line of readFileSync(path.join(repoRoot, 'Procfile'), 'utf8').split('\n')) {
    const match = /^([\w-]+):\s*(.+)$/.exec(line.trim());
    if (!match) continue;
    const words = match[2]!.split(/\s+/);
    const env: Record<string, string> = {};
    while (words[0] && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
      const [key, ...value] = words.shift()!.split('=');
      env[key!] = value.join('=');
    }
    entries.set(match[1]!, { name: match[1]!, env, argv: words });
  }
  return entries;
}

/**
 * A platform process started as its Procfile line says (`node dist/src/api/server.js`, `node
 * dist/src/workers/main.js --queues …`), from the repository root, with the suite's environment on
 * top of the line's own (HOST is forced to 127.0.0.1, ports are spare ones). Output goes to
 * `<logs>/<name>.log`. Readiness: a web process answers `/readyz` 200; a worker has logged
 * `worker started` for each of its queues.
 */
export class PlatformProcess {
  child?: ChildProcess;
  private log: WriteStream;
  /** Ready times of every start, in ms (the first one included). */
  readonly readyMs: number[] = [];
  starts = 0;

  constructor(
    readonly name: string,
    readonly entry: ProcfileEntry,
    private env: Record<string, string>,
    private readonly repoRoot: string,
    logs: string,
    readonly url?: string,
  ) {
    this.log = createWriteStream(path.join(logs, `${name}.log`), { flags: 'a' });
  }

  get kind(): string {
    return this.entry.name;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Changes the environment of the next start (a configuration change rolled out by a restart). */
  setEnv(env: Record<string, string>): void {
    this.env = { ...this.env, ...env };
  }

  async start(): Promise<number> {
    const started = Date.now();
    const [command, ...args] = this.entry.argv;
    const file = command === 'node' ? process.execPath : command!;
    this.starts += 1;
    this.log.write(`\n=== start ${this.starts} at ${new Date().toISOString()} ===\n`);
    const child = spawn(file, args, {
      cwd: this.repoRoot,
      env: { PATH: process.env.PATH ?? '', ...this.entry.env, ...this.env, HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let output = '';
    const collect = (chunk: Buffer) => {
      this.log.write(chunk);
      if (output.length < 1_000_000) output += chunk.toString();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const queues = (/--queues\s+(\S+)/.exec(this.entry.argv.join(' '))?.[1] ?? '').split(',').filter(Boolean);
    const deadline = started + 90_000;
    for (;;) {
      if (!this.running) throw new Error(`${this.name} exited at start:\n${output.slice(-3000)}`);
      if (Date.now() > deadline)
        throw new Error(`${this.name} not ready within 90 s:\n${output.slice(-3000)}`);
      if (this.url) {
        const ok = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
          (res) => res.ok,
          () => false,
        );
        if (ok) break;
      } else if ((output.match(/"msg":"worker started"/g) ?? []).length >= Math.max(1, queues.length)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ms = Date.now() - started;
    this.readyMs.push(ms);
    return ms;
  }

  /** kill -9: no shutdown at all, as a crashed host or an OOM kill. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGKILL');
    await exited(child);
  }

  /** SIGTERM and wait for the exit: resolves with the exit code and how long the shutdown took. */
  async terminate(): Promise<{ code: number | null; ms: number }> {
    const child = this.child;
    if (!child || !this.running) return { code: child?.exitCode ?? null, ms: 0 };
    const started = Date.now();
    child.kill('SIGTERM');
    await exited(child);
    return { code: child.exitCode, ms: Date.now() - started };
  }

  close(): void {
    this.log.end();
  }
}
