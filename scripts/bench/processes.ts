import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled tree (`dist/`), where the benchmarks start their entry points from. */
const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Starts a compiled entry point (`src/api/server.js`, …) with this environment; resolves when
 * its output matches `ready`, or when `ready.url` answers 2xx.
 */
export function startCompiled(
  script: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp | { url: string },
  niceness = 0,
): Promise<ChildProcess> {
  const command = [process.execPath, path.join(distDir, script), ...args];
  // `nice` execs node in place, so the pid (and its /proc CPU counters) stays the node process's.
  const [file, ...argv] = niceness ? ['nice', '-n', String(niceness), ...command] : command;
  const child = spawn(file!, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise<ChildProcess>((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (ready instanceof RegExp && ready.test(seen)) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}:\n${seen}`)));
    if (!(ready instanceof RegExp)) {
      const poll = () =>
        fetch(ready.url).then(
          (res) => (res.ok ? resolve(child) : setTimeout(poll, 100)),
          () => setTimeout(poll, 100),
        );
      poll();
    }
  });
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/**
 * CPU seconds a process has used so far (user + system), from /proc. With `reapedChildren`, also
 * the CPU of its children that have exited (cutime + cstime): the postmaster's count of the
 * backends it reaped, so a backend that exits during a measurement keeps its time in the sum.
 */
export function cpuSecondsOf(pid: number, options: { reapedChildren?: boolean } = {}): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // Fields 14-17 of proc(5) (utime, stime, cutime, cstime), in clock ticks of 10 ms.
  const ticks = fields[11]! + fields[12]! + (options.reapedChildren ? fields[13]! + fields[14]! : 0);
  return ticks / 100;
}
