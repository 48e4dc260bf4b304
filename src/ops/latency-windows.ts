import type { RedisClient } from '../connections.js';
import type { Logger } from '../log.js';
import { latencyWindowKey as windowKey } from '../redis-keys.js';

/**
 * Route latencies of every web process, pooled per minute in Redis for the platform's own
 * route_latency alert (Prometheus has its own copy in stockflow_http_request_duration_seconds).
 * Each process counts requests per route and latency bucket in memory and adds them to the
 * minute's hash every few seconds; the evaluator reads the minutes of its window.
 */

const flushMs = 5000;
const minuteMs = 60_000;
const standardEdgesMs = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000];

export interface LatencyRecorder {
  record(route: string, seconds: number): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface RouteLatency {
  route: string;
  requests: number;
  /** Requests slower than the threshold. */
  slower: number;
  /** Upper edge (ms) of the bucket holding the 99th percentile; Infinity above the last edge. */
  p99Ms: number;
}

/** Bucket edges in ms, the alert threshold among them, so "p99 above the threshold" is exact. */
export function latencyEdges(thresholdMs: number): number[] {
  return [...new Set([...standardEdgesMs, thresholdMs])].sort((a, b) => a - b);
}

export function createLatencyRecorder(
  redis: RedisClient,
  ops: string,
  opts: { thresholdMs: number; windowMs: number; log: Logger },
): LatencyRecorder {
  const edges = latencyEdges(opts.thresholdMs);
  let pending = new Map<string, number>();
  let minute = Math.floor(Date.now() / minuteMs);
  const flush = async () => {
    if (pending.size === 0) return;
    const batch = pending;
    const key = windowKey(ops, minute);
    pending = new Map();
    const pipeline = redis.pipeline();
    for (const [field, n] of batch) pipeline.hincrby(key, field, n);
    pipeline.pexpire(key, opts.windowMs + 2 * minuteMs);
    await pipeline.exec().catch((error: unknown) => opts.log.debug({ err: error }, 'latencies not flushed'));
  };
  const timer = setInterval(() => void flush(), flushMs);
  timer.unref();
  return {
    record(route, seconds) {
      const now = Math.floor(Date.now() / minuteMs);
      if (now !== minute) {
        void flush();
        minute = now;
      }
      const ms = seconds * 1000;
      const bucket = edges.findIndex((edge) => ms <= edge);
      const field = `${bucket === -1 ? edges.length : bucket}|${route}`;
      pending.set(field, (pending.get(field) ?? 0) + 1);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}

/** Per route over the minutes of the window ending at `now`: requests, how many were slower than the threshold, p99. */
export async function readRouteLatencies(
  redis: RedisClient,
  ops: string,
  opts: { thresholdMs: number; windowMs: number; now: number },
): Promise<RouteLatency[]> {
  const edges = latencyEdges(opts.thresholdMs);
  const last = Math.floor(opts.now / minuteMs);
  const minutes = Math.max(1, Math.ceil(opts.windowMs / minuteMs));
  const pipeline = redis.pipeline();
  for (let m = last - minutes + 1; m <= last; m++) pipeline.hgetall(windowKey(ops, m));
  const results = (await pipeline.exec()) ?? [];
  const byRoute = new Map<string, number[]>();
  for (const [error, hash] of results) {
    if (error) throw error;
    for (const [field, n] of Object.entries(hash as Record<string, string>)) {
      const bar = field.indexOf('|');
      const bucket = Number(field.slice(0, bar));
      const route = field.slice(bar + 1);
      const counts = byRoute.get(route) ?? new Array<number>(edges.length + 1).fill(0);
      counts[bucket] = (counts[bucket] ?? 0) + Number(n);
      byRoute.set(route, counts);
    }
  }
  const thresholdIndex = edges.indexOf(opts.thresholdMs);
  return [...byRoute].map(([route, counts]) => {
    const requests = counts.reduce((a, b) => a + b, 0);
    const slower = counts.slice(thresholdIndex + 1).reduce((a, b) => a + b, 0);
    let seen = 0;
    let p99Bucket = counts.length - 1;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i]!;
      if (seen >= 0.99 * requests) {
        p99Bucket = i;
        break;
      }
    }
    return { route, requests, slower, p99Ms: edges[p99Bucket] ?? Number.POSITIVE_INFINITY };
  });
}
