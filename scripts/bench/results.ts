import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The result files of the benchmarks: each bench writes `bench/out/<bench>.json` from the figures
 * it prints (its printed lines stay as they were), the fault suite writes `bench/out/faults.json`,
 * and `scripts/bench-report.ts` renders them all into `bench/results.md` and `bench/results.html`.
 */

/** One measured case of a benchmark: throughput and/or latency, and its same-run baseline. */
export interface BenchCase {
  name: string;
  /** Throughput in `unit` (req/s, movements/s, events/s, images/s, jobs/s). */
  rate?: number;
  unit?: string;
  p50Ms?: number;
  p99Ms?: number;
  /** The baseline measured in the same run, in the same unit. */
  baseline?: { name: string; rate?: number; p50Ms?: number; p99Ms?: number };
}

export interface BenchResult {
  kind: 'bench';
  bench: string;
  title: string;
  at: string;
  cases: BenchCase[];
  /** The benchmark's last printed line (the machine-readable one, where it has one). */
  line?: string;
}

/** One configuration of `bench:scale`: `workers` worker and `webs` web processes. */
export interface ScalePoint {
  workers: number;
  webs: number;
  jobs: number;
  seconds: number;
  rate: number;
  /** rate / (workers × the rate of one worker with the same web processes). */
  efficiency: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU seconds per 1000 jobs, per process class (all processes of a class summed). */
  cpuPer1000: Record<string, number>;
  /** Cores each process class used while it ran (CPU seconds / wall seconds), busiest single process too. */
  cores: Record<string, number>;
  busiest: { process: string; cores: number };
  /** Cores the whole machine was busy (ours and every other process), from /proc/stat. */
  machineBusy: number;
  /**
   * The rate this configuration's CPU per job allows on the machine with nothing else running:
   * cores / (CPU seconds per job of every process, the client included). On a shared machine the
   * measured rate is what was left over; this one is what the processes' own cost sets.
   */
  dedicatedRate: number;
  /** On a Redis Cluster: CPU seconds per 1000 jobs of its busiest master (its queues' slots cap the rate). */
  redisBusiestPer1000?: number;
}

export interface ScaleResult {
  kind: 'scale';
  /** The Redis of the run: one server, or a Redis Cluster of `redisMasters` masters (BENCH_SCALE_REDIS). */
  redis?: 'single' | 'cluster';
  redisMasters?: number;
  at: string;
  quick: boolean;
  machineCores: number;
  mix: string;
  points: ScalePoint[];
  saturated: string;
  projection: ScaleProjection;
  line: string;
}

export interface ScaleProjection {
  /** Postgres CPU seconds per job (the mean over the configurations with 4 workers). */
  postgresCpuPerJob: number;
  jobsPerPostgresCore: number;
  /** Redis is one thread: the ceiling of one Redis whatever the cores. */
  redisCeilingJobsPerSecond: number;
  /**
   * Rows for primaries of a few sizes: the jobs/s Postgres alone sustains at the utilisation
   * ceiling, then what one Redis lets through (`limit` names which binds), and per day.
   */
  primaries: {
    cores: number;
    postgresJobsPerSecond: number;
    jobsPerSecond: number;
    limit: 'postgres' | 'redis';
    movementsPerDay: number;
    ordersPerDay: number;
    /** Per day with Postgres alone as the limit (Redis spread over a cluster, docs/scaling.md). */
    postgresMovementsPerDay: number;
    postgresOrdersPerDay: number;
  }[];
  assumptions: string[];
}

export interface FaultsResult {
  kind: 'faults';
  at: string;
  seed: number;
  rate: number;
  startedAt: number;
  /** Per second since `startedAt`: jobs finished, acknowledged, and failed exchanges (5xx, errors). */
  timeline: { second: number; completed: number; acknowledged: number; errors: number }[];
  faults: { name: string; at: number; healedAt: number; recoverySeconds: number | null; detail: string }[];
  p50Ms: number;
  p99Ms: number;
  line: string;
}

export type AnyResult = BenchResult | ScaleResult | FaultsResult;

/** The repository root: the first folder above this file holding package.json (from src or dist). */
function repositoryRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('no package.json above scripts/bench');
    dir = up;
  }
  return dir;
}

export const repoRoot = repositoryRoot();
export const benchDir = path.join(repoRoot, 'bench');
export const benchOutDir = path.join(benchDir, 'out');

/** Writes `bench/out/<name>.json`; resolves with its path. */
export function writeResult(name: string, result: AnyResult, dir = benchOutDir): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

/** A benchmark's result file from its cases (`at` is now). */
export function writeBenchResult(result: Omit<BenchResult, 'kind' | 'at'>): string {
  return writeResult(result.bench, { kind: 'bench', at: new Date().toISOString(), ...result });
}

/** Every result file of `dir`, by file name without `.json`. */
export function readResults(dir = benchOutDir): Map<string, AnyResult> {
  const out = new Map<string, AnyResult>();
  if (!existsSync(dir)) return out;
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.json')) continue;
    out.set(file.slice(0, -5), JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as AnyResult);
  }
  return out;
}
