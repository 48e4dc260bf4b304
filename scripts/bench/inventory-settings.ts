import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSecondsOf } from './processes.js';

/** Settings and measuring helpers shared by `scripts/bench-inventory.ts` and its baselines. */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const env = process.env;
export const jobsPerCase = Number(env.BENCH_JOBS ?? 3000);
export const latencySeconds = Number(env.BENCH_SECONDS ?? 5);
export const httpConcurrency = Number(env.BENCH_HTTP_CONCURRENCY ?? 64);
export const workerConcurrency = Number(env.WORKER_CONCURRENCY_INVENTORY ?? 16);
export const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/stockflow_bench';
export const spreadSkus = 10_000;
export const cases = env.BENCH_CASES?.split(',');
export const prefix = `bench-${process.pid}`;

export type Op = 'adjust' | 'reserve';
export type Case = 'hot' | 'spread';

export const pick = (c: Case) => (c === 'hot' ? 'HOT' : `S${Math.floor(Math.random() * spreadSkus)}`);

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
export const ms = (v: number) => `${v.toFixed(1)} ms`;

/** CPU seconds used so far by a process (user + system), from /proc. */
/** A process's CPU seconds, with its exited children's (0 once it is gone itself). */
function cpuSeconds(pid: number): number {
  try {
    return cpuSecondsOf(pid, { reapedChildren: true });
  } catch {
    return 0;
  }
}
function pidsOf(name: string): number[] {
  try {
    return execFileSync('pgrep', ['-x', name]).toString().trim().split('\n').map(Number);
  } catch {
    return [];
  }
}

export interface Processes {
  web: ChildProcess;
  worker: ChildProcess;
}
export function cpuSnapshot(p: Processes) {
  return {
    web: cpuSeconds(p.web.pid!),
    worker: cpuSeconds(p.worker.pid!),
    postgres: pidsOf('postgres').reduce((n, pid) => n + cpuSeconds(pid), 0),
    redis: pidsOf('redis-server').reduce((n, pid) => n + cpuSeconds(pid), 0),
    bench: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
}
export function cpuPerThousand(
  before: ReturnType<typeof cpuSnapshot>,
  after: ReturnType<typeof cpuSnapshot>,
  jobs: number,
) {
  return Object.fromEntries(
    Object.keys(before).map((k) => {
      const key = k as keyof typeof before;
      return [key, Number((((after[key] - before[key]) * 1000) / jobs).toFixed(2))];
    }),
  );
}
