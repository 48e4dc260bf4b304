import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readResults, type ScaleResult } from '../../scripts/bench/results.js';
import { type Chart, renderHtml, renderMarkdown } from '../../scripts/bench/results-page.js';
import { project, saturationOf } from '../../scripts/bench/scale-model.js';
import type { Operation } from '../../scripts/faults/client.js';
import { timeline } from '../../scripts/faults/report.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/bench');
const results = readResults(fixtures);
const scale = results.get('scale') as ScaleResult;
const generatedAt = new Date('2026-12-02T00:00:00Z');

/** The chart data block of the page, and the chart containers it must feed. */
function chartsOf(html: string): { data: Record<string, Chart>; containers: string[] } {
  const json = /<script type="application\/json" id="chart-data">([\s\S]*?)<\/script>/.exec(html)?.[1];
  const containers = [...html.matchAll(/<div class="chart" id="[^"]+" data-chart="([^"]+)"><\/div>/g)].map(
    (m) => m[1]!,
  );
  return { data: JSON.parse(json ?? 'null') as Record<string, Chart>, containers };
}

describe('benchmark report from result files', () => {
  it('reads every fixture', () => {
    expect([...results.keys()].sort()).toEqual(['events', 'faults', 'intake', 'inventory', 'scale']);
  });

  it('renders the markdown: every benchmark, its cases, the scale curve, the projection, the faults', () => {
    const md = renderMarkdown(results, generatedAt);
    for (const heading of [
      'Intake: POST /api/pms/products through a web process',
      'Scale curve: worker and web processes against one Postgres and one Redis',
      'Fault timeline (npm run test:faults)',
    ])
      expect(md).toContain(`## ${heading}`);
    expect(md).toContain('| stockflow, no worker running | 11,500 | req/s | 0.0 | 3.0 |');
    expect(md).toContain('| hot adjust, concurrency 64, group commit on | 582 | movements/s | 4.2 | 8.1 |');
    // Scale: per configuration, then the projection rows and the assumptions.
    expect(md).toContain('| 2 | 1 | 111.0 | 173.9 | 0.56 | 850 | 1,600 | 1.97 | machine:worker |');
    expect(md).toContain('| 4 | 1,191 | 34,300,800 | 8,575,200 | 778 | redis | 22,406,400 | 5,601,600 |');
    expect(md).toContain('| Postgres is the shared bottleneck |');
    // Faults: seconds from the load's start; a fault without recovery says so.
    expect(md).toContain('| redis-kill | 2.0 | 3.5 | 4.3 | 0.8 | first 202 after the restart |');
    expect(md).toContain('| postgres-restart | 4.2 | 4.9 | — | none | no success after it |');
    // The machine-readable lines, and the benchmarks with no file yet.
    expect(md).toContain(scale.line);
    expect(md).toContain('`npm run bench:reads`, `npm run bench:images`, `npm run bench:reports`');
  });

  it('renders the HTML: every chart container has its data, as in the fixtures', () => {
    const html = renderHtml(results, generatedAt);
    const { data, containers } = chartsOf(html);
    expect(containers.sort()).toEqual(
      [
        'intake-throughput',
        'intake-latency',
        'inventory-throughput',
        'inventory-latency',
        'events-throughput',
        'events-latency',
        'scale-rate',
        'scale-efficiency',
        'scale-p99',
        'scale-cpu',
        'faults-timeline',
      ].sort(),
    );
    for (const id of containers) {
      const chart = data[id]!;
      expect(chart, id).toBeDefined();
      for (const values of Object.values(chart.series)) expect(values).toHaveLength(chart.x.length);
    }
    expect(data['inventory-throughput']!.series).toEqual({ measured: [582, 538], baseline: [890, 1362] });
    expect(data['events-latency']!.series).toEqual({ p50: [7], p99: [25], 'baseline p99': [17] });
    expect(data['scale-rate']).toMatchObject({
      x: [1, 2],
      series: { '1 web': [100, 111], '2 web': [105, 114] },
    });
    expect(data['scale-cpu']!.series.postgres).toEqual([2.3, 2.4]);
    expect(data['faults-timeline']).toMatchObject({
      x: [0, 1, 2, 3, 4, 5],
      series: { 'jobs finished': [9, 10, 2, 0, 18, 11], 'failed exchanges': [0, 0, 6, 10, 0, 0] },
      marks: [
        { name: 'redis-kill', from: 2, to: 3.5, recovered: 4.3 },
        { name: 'postgres-restart', from: 4.2, to: 4.9, recovered: null },
      ],
    });
  });

  it('works offline: uPlot and its styles inline, nothing loaded from elsewhere', () => {
    const html = renderHtml(results, generatedAt);
    expect(html).not.toMatch(/<script[^>]*\bsrc=/);
    expect(html).not.toMatch(/<link\b/);
    expect(html).not.toMatch(/(src|href)=["']?https?:|url\(\s*["']?https?:|@import/);
    expect(html).toContain('.uplot');
    expect(html).toMatch(/var uPlot\s*=/);
  });
});

describe('scale projection', () => {
  it('takes the median Postgres CPU per job and caps at one Redis', () => {
    const p = project(scale.points);
    // Postgres per 1000 jobs 2.3, 2.4, 2.3, 2.4 → median 2.35 ms per job.
    expect(p.postgresCpuPerJob).toBeCloseTo(0.00235, 6);
    expect(p.jobsPerPostgresCore).toBe(426);
    // Redis 0.9 ms per job: 0.7 of its one core carries 778 jobs/s, below 4 Postgres cores (1191).
    expect(p.redisCeilingJobsPerSecond).toBe(778);
    expect(p.primaries[0]).toEqual({
      cores: 4,
      postgresJobsPerSecond: 1191,
      jobsPerSecond: 778,
      limit: 'redis',
      movementsPerDay: 22_400_000,
      ordersPerDay: 5_600_000,
      postgresMovementsPerDay: 34_314_894,
      postgresOrdersPerDay: 8_578_723,
    });
    expect(p.primaries.find((row) => row.cores === 32)!.limit).toBe('redis');
  });

  it('names a single process at a core before the machine', () => {
    const point = scale.points[0]!;
    expect(saturationOf(point, 2)).toBe('machine:worker');
    expect(saturationOf({ ...point, busiest: { process: 'web-2', cores: 0.95 } }, 2)).toBe('web');
    expect(saturationOf({ ...point, machineBusy: 0.5 }, 2)).toBe('none');
  });
});

describe('fault timeline', () => {
  it('counts per second from the load start, leaving the set-up out', () => {
    const op = (startedAt: number, ack: number, finishedAt: number, errors: number[]): Operation => ({
      op: 0,
      kind: 'inventory.adjust',
      method: 'POST',
      path: '/api/pms/inventory/adjust',
      key: 'k',
      wait: false,
      startedAt,
      attempts: errors.map((at) => ({ at, web: 0, purpose: 'submit' as const, status: 503, ms: 1 })),
      ack: { at: ack, status: 202, via: 'accepted' },
      outcome: 'completed',
      finishedAt,
      resubmits: 0,
      resubmittedAt: [],
    });
    const rows = timeline(
      [op(500, 600, 700, []), op(1000, 1100, 3500, [1050]), op(2000, 2100, 2200, [])],
      1000,
    );
    expect(rows).toEqual([
      { second: 0, completed: 0, acknowledged: 1, errors: 1 },
      { second: 1, completed: 1, acknowledged: 1, errors: 0 },
      { second: 2, completed: 1, acknowledged: 0, errors: 0 },
    ]);
  });
});
