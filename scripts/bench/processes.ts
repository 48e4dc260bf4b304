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

/** CPU seconds a process has used so far (user + system), from /proc. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 10 ms
}
