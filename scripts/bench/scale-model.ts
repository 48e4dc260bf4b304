import type { ScalePoint, ScaleProjection } from './results.js';

/**
 * The projection of `bench:scale` (docs/scaling.md): from the CPU each process spends per job,
 * what one Postgres primary (and one Redis) carries on a larger machine. Pure, so the report test
 * and the docs agree with the bench.
 */

/** Share of a resource's CPU a sustained load may use: headroom for peaks, vacuum, reads, backups. */
export const utilisationCeiling = 0.7;
/** A shop's busiest hour against its average hour. */
export const peakToAverage = 3;
/** Jobs per order over its life: placed (reserves), confirmed, fulfilled (moves stock), one more for stock upkeep. */
export const jobsPerOrder = 4;
/** Primary sizes the projection lists. */
export const primaryCores = [4, 8, 16, 32];

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * What limited a configuration: a single Node process or Redis (one thread each) at or above
 * `busy` of a core; else the machine, when it was `busy` of its cores busy (ours and any other
 * load), named `machine:<the class of ours using most>`; else `none` (the client did not fill it).
 */
export function saturationOf(point: ScalePoint, machineCores: number, busy = 0.85): string {
  if (point.busiest.cores >= busy) return point.busiest.process.replace(/-\d+$/, '');
  if (point.machineBusy >= busy * machineCores) {
    const [top] = Object.entries(point.cores)
      .filter(([k]) => k !== 'client')
      .sort((a, b) => b[1] - a[1]);
    return `machine:${top?.[0] ?? 'unknown'}`;
  }
  return 'none';
}

export function project(points: ScalePoint[]): ScaleProjection {
  // CPU per job does not depend on how many processes share it, unless they contend: the median
  // over every configuration is robust to one noisy run.
  const perJob = (k: string) => median(points.map((p) => (p.cpuPer1000[k] ?? 0) / 1000));
  const postgres = perJob('postgres');
  // On a cluster the busiest master binds first (each queue lives on one), not the masters' sum.
  const redis = points.some((p) => p.redisBusiestPer1000 !== undefined)
    ? median(points.map((p) => (p.redisBusiestPer1000 ?? 0) / 1000))
    : perJob('redis');
  const jobsPerPostgresCore = postgres > 0 ? 1 / postgres : Number.POSITIVE_INFINITY;
  const redisCeiling = redis > 0 ? utilisationCeiling / redis : Number.POSITIVE_INFINITY;
  const perDay = (jobsPerSecond: number) => (jobsPerSecond * 86_400) / peakToAverage;
  const primaries = primaryCores.map((cores) => {
    const postgresJobs = utilisationCeiling * cores * jobsPerPostgresCore;
    const jobsPerSecond = Math.min(postgresJobs, redisCeiling);
    return {
      cores,
      postgresJobsPerSecond: Math.round(postgresJobs),
      jobsPerSecond: Math.round(jobsPerSecond),
      limit: postgresJobs <= redisCeiling ? ('postgres' as const) : ('redis' as const),
      movementsPerDay: Math.round(perDay(jobsPerSecond)),
      ordersPerDay: Math.round(perDay(jobsPerSecond) / jobsPerOrder),
      postgresMovementsPerDay: Math.round(perDay(postgresJobs)),
      postgresOrdersPerDay: Math.round(perDay(postgresJobs) / jobsPerOrder),
    };
  });
  return {
    postgresCpuPerJob: postgres,
    jobsPerPostgresCore: Math.round(jobsPerPostgresCore),
    redisCeilingJobsPerSecond: Math.round(redisCeiling),
    primaries,
    assumptions: [
      'Postgres is the shared bottleneck: web and worker processes scale out on other hosts, so only Postgres and Redis are single instances (one Redis caps the rate too; on a Redis Cluster its busiest master does, each queue living in one slot)',
      `Postgres is CPU-bound and linear in jobs: CPU per job as measured here (the median over the configurations), no lock contention (distinct skus), disks and WAL fsync keep up`,
      `a sustained load uses at most ${utilisationCeiling * 100} % of a resource's CPU; Redis is one thread, so one core whatever the machine`,
      `a day's volume is ${peakToAverage}× thinner than its busiest hour (the capacity must carry the peak)`,
      `a movement costs one job of the mix; an order costs ${jobsPerOrder} jobs over its life`,
    ],
  };
}
