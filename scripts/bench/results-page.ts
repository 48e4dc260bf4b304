import { opsAssets } from '../../src/reports/ops-assets.js';
import { escapeHtml } from '../../src/reports/ops-page.js';
import type { AnyResult, BenchCase, BenchResult, FaultsResult, ScaleResult } from './results.js';
import { saturationOf } from './scale-model.js';

/**
 * Renders the result files of bench/out into bench/results.md and bench/results.html (pure: the
 * unit test renders fixtures). The HTML carries uPlot's script and styles inline and its chart
 * data as a JSON block, so the one file works offline; every table is in both pages.
 */

/** The benchmarks `npm run bench` runs, in its order, with the command that writes each file. */
export const benchmarks: { name: string; command: string }[] = [
  { name: 'intake', command: 'npm run bench:intake' },
  { name: 'inventory', command: 'npm run bench:inventory' },
  { name: 'reads', command: 'npm run bench:reads' },
  { name: 'events', command: 'npm run bench:events' },
  { name: 'images', command: 'npm run bench:images' },
  { name: 'reports', command: 'npm run bench:reports' },
  { name: 'scale', command: 'npm run bench:scale' },
  { name: 'scale-cluster', command: 'BENCH_SCALE_REDIS=cluster npm run bench:scale' },
  { name: 'faults', command: 'npm run test:faults' },
];

type Cell = string | number;
interface Table {
  head: string[];
  rows: Cell[][];
}

/** A chart: `x` values (or case indexes with `labels`), named series, optional fault windows. */
export interface Chart {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  x: number[];
  /** Names of the x positions when they are cases, not numbers. */
  labels?: string[];
  series: Record<string, (number | null)[]>;
  bars?: boolean;
  /** Ticks at the x values only (process counts), not between them. */
  discrete?: boolean;
  /** Fault windows: injected at `from`, healed at `to`, recovered at `recovered` (seconds). */
  marks?: { name: string; from: number; to: number; recovered: number | null }[];
}

interface Section {
  id: string;
  heading: string;
  intro: string[];
  tables: { caption: string; table: Table }[];
  charts: Chart[];
  line?: string;
  /** The one line the summary table (and the README) gives this benchmark. */
  headline: string;
}

const num = (v: number | undefined | null, digits = 0) =>
  v === undefined || v === null || Number.isNaN(v)
    ? '—'
    : v.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const at = (iso: string) => iso.replace('T', ' ').slice(0, 16);

function benchSection(r: BenchResult): Section {
  const rated = r.cases.filter((c) => c.rate !== undefined);
  const timed = r.cases.filter((c) => c.p99Ms !== undefined || c.baseline?.p99Ms !== undefined);
  const ratio = (c: BenchCase) =>
    c.rate !== undefined && c.baseline?.rate ? (c.rate / c.baseline.rate).toFixed(2) : '—';
  const charts: Chart[] = [];
  if (rated.length)
    charts.push({
      id: `${r.bench}-throughput`,
      title: `${r.bench}: throughput`,
      xLabel: 'case',
      yLabel: [...new Set(rated.map((c) => c.unit ?? ''))].join(', '),
      x: rated.map((_, i) => i),
      labels: rated.map((c) => c.name),
      series: {
        measured: rated.map((c) => c.rate ?? null),
        baseline: rated.map((c) => c.baseline?.rate ?? null),
      },
      bars: true,
    });
  if (timed.length)
    charts.push({
      id: `${r.bench}-latency`,
      title: `${r.bench}: latency (ms)`,
      xLabel: 'case',
      yLabel: 'ms',
      x: timed.map((_, i) => i),
      labels: timed.map((c) => c.name),
      series: {
        p50: timed.map((c) => c.p50Ms ?? null),
        p99: timed.map((c) => c.p99Ms ?? null),
        'baseline p99': timed.map((c) => c.baseline?.p99Ms ?? null),
      },
      bars: true,
    });
  // The headline: the first case measured against a baseline (the platform, not a baseline row).
  const lead = r.cases.find((c) => c.baseline) ?? r.cases[0];
  const headline = lead
    ? [
        `${lead.name}: `,
        lead.rate !== undefined ? `${num(lead.rate)} ${lead.unit ?? ''}` : '',
        lead.p99Ms !== undefined ? `${lead.rate !== undefined ? ', ' : ''}p99 ${num(lead.p99Ms, 1)} ms` : '',
        ratio(lead) !== '—' ? ` (${ratio(lead)}× ${lead.baseline!.name})` : '',
      ].join('')
    : '';
  return {
    id: r.bench,
    heading: r.title,
    headline,
    intro: [`Measured ${at(r.at)} UTC.`],
    tables: [
      {
        caption: 'Throughput and latency per case, with the baseline measured in the same run',
        table: {
          head: [
            'case',
            'throughput',
            'unit',
            'p50 ms',
            'p99 ms',
            'baseline',
            'baseline throughput',
            'ratio',
          ],
          rows: r.cases.map((c) => [
            c.name,
            num(c.rate),
            c.unit ?? '',
            num(c.p50Ms, 1),
            num(c.p99Ms, 1),
            c.baseline
              ? `${c.baseline.name}${c.baseline.p99Ms !== undefined ? ` (p50 ${num(c.baseline.p50Ms, 1)}, p99 ${num(c.baseline.p99Ms, 1)} ms)` : ''}`
              : '',
            num(c.baseline?.rate),
            ratio(c),
          ]),
        },
      },
    ],
    charts,
    ...(r.line ? { line: r.line } : {}),
  };
}

/** The scale curve of one run: `id` is its result file's name (`scale`, or `scale-cluster` on a Redis Cluster). */
function scaleSection(r: ScaleResult, id: string): Section {
  const onCluster = r.redis === 'cluster';
  const redisName = onCluster ? `a Redis Cluster of ${r.redisMasters ?? 3} masters` : 'one Redis';
  const webs = [...new Set(r.points.map((p) => p.webs))];
  const workers = [...new Set(r.points.map((p) => p.workers))];
  const classes = [...new Set(r.points.flatMap((p) => Object.keys(p.cpuPer1000)))];
  const ofWeb = (w: number) => r.points.filter((p) => p.webs === w);
  const series = (pick: (p: ScaleResult['points'][number]) => number) =>
    Object.fromEntries(
      webs.map((w) => [
        `${w} web`,
        workers.map((n) => {
          const p = ofWeb(w).find((q) => q.workers === n);
          return p ? pick(p) : null;
        }),
      ]),
    );
  const top = r.points.at(-1);
  const p = r.projection;
  return {
    id,
    heading: `Scale curve: worker and web processes against one Postgres and ${redisName}`,
    headline: top
      ? `${num(r.points[0]!.rate, 1)} jobs/s with 1 worker, ${num(top.rate, 1)} with ${top.workers} workers and ${top.webs} web ` +
        `(efficiency ${num(top.efficiency, 2)}, e2e p99 ${num(top.p99Ms)} ms); limit: ${r.saturated}; ` +
        `${p.jobsPerPostgresCore} jobs/s per Postgres core`
      : '',
    intro: [
      `Measured ${at(r.at)} UTC on a ${r.machineCores}-core machine shared with other work${r.quick ? ' (SCALE_QUICK=1: a short run)' : ''}. Mix: ${r.mix}.`,
      `Efficiency is rate(n) / (n × rate(1)) with the same web processes; "limit" names what was saturated; ` +
        '"on a machine of its own" is cores / CPU seconds per job of every process (the client included): ' +
        "what the processes' own cost allows when nothing else runs (docs/scaling.md).",
    ],
    tables: [
      {
        caption: 'Per configuration',
        table: {
          head: [
            'workers',
            'web',
            'jobs/s',
            'jobs/s on a machine of its own',
            'efficiency',
            'e2e p50 ms',
            'e2e p99 ms',
            'machine busy (cores)',
            'limit',
            ...classes.map((k) => `${k} CPU s / 1000 jobs`),
          ],
          rows: r.points.map((pt) => [
            pt.workers,
            pt.webs,
            num(pt.rate, 1),
            num(pt.dedicatedRate, 1),
            num(pt.efficiency, 2),
            num(pt.p50Ms),
            num(pt.p99Ms),
            num(pt.machineBusy, 2),
            saturationOf(pt, r.machineCores),
            ...classes.map((k) => num(pt.cpuPer1000[k], 2)),
          ]),
        },
      },
      {
        caption: `Projection: ${(p.postgresCpuPerJob * 1000).toFixed(2)} ms of Postgres CPU per job = ${p.jobsPerPostgresCore} jobs/s per core; ${onCluster ? 'its busiest master' : 'one Redis'} ≤ ${p.redisCeilingJobsPerSecond} jobs/s`,
        table: {
          head: [
            'primary cores',
            'Postgres alone: jobs/s',
            'movements/day',
            'orders/day',
            `with ${redisName}: jobs/s`,
            'limit',
            'movements/day',
            'orders/day',
          ],
          rows: p.primaries.map((row) => [
            row.cores,
            num(row.postgresJobsPerSecond),
            num(row.postgresMovementsPerDay),
            num(row.postgresOrdersPerDay),
            num(row.jobsPerSecond),
            row.limit,
            num(row.movementsPerDay),
            num(row.ordersPerDay),
          ]),
        },
      },
      {
        caption: 'Assumptions of the projection',
        table: { head: ['assumption'], rows: p.assumptions.map((a) => [a]) },
      },
    ],
    charts: [
      {
        id: `${id}-rate`,
        title: 'jobs/s by worker processes',
        xLabel: 'worker processes',
        discrete: true,
        yLabel: 'jobs/s',
        x: workers,
        series: {
          ...series((pt) => pt.rate),
          ...Object.fromEntries(
            Object.entries(series((pt) => pt.dedicatedRate)).map(([k, v]) => [`${k}, machine of its own`, v]),
          ),
        },
      },
      {
        id: `${id}-efficiency`,
        title: 'efficiency by worker processes',
        xLabel: 'worker processes',
        discrete: true,
        yLabel: 'rate(n) / (n × rate(1))',
        x: workers,
        series: series((pt) => pt.efficiency),
      },
      {
        id: `${id}-p99`,
        title: 'end-to-end p99 (ms) by worker processes',
        xLabel: 'worker processes',
        discrete: true,
        yLabel: 'ms',
        x: workers,
        series: series((pt) => pt.p99Ms),
      },
      {
        id: `${id}-cpu`,
        title: `CPU seconds per 1000 jobs by process (${top?.webs ?? 1} web)`,
        xLabel: 'worker processes',
        discrete: true,
        yLabel: 'CPU s / 1000 jobs',
        x: workers,
        series: Object.fromEntries(
          classes.map((k) => [
            k,
            workers.map((n) => ofWeb(top?.webs ?? 1).find((q) => q.workers === n)?.cpuPer1000[k] ?? null),
          ]),
        ),
      },
    ],
    line: r.line,
  };
}

function faultsSection(r: FaultsResult): Section {
  const rel = (ms: number) => Number(((ms - r.startedAt) / 1000).toFixed(1));
  const marks = r.faults.map((f) => ({
    name: f.name,
    from: rel(f.at),
    to: rel(f.healedAt),
    recovered: f.recoverySeconds === null ? null : Number((rel(f.healedAt) + f.recoverySeconds).toFixed(1)),
  }));
  return {
    id: 'faults',
    heading: 'Fault timeline (npm run test:faults)',
    headline: r.line,
    intro: [
      `Measured ${at(r.at)} UTC: seed ${r.seed}, offered ${r.rate} operations/s; e2e p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms.`,
      'Each fault is shaded from injection to healing; the line after it is when the platform had recovered.',
    ],
    tables: [
      {
        caption: 'Faults, seconds from the start of the load',
        table: {
          head: ['fault', 'injected s', 'healed s', 'recovered s', 'recovery s', 'detail'],
          rows: r.faults.map((f, i) => [
            f.name,
            num(marks[i]!.from, 1),
            num(marks[i]!.to, 1),
            num(marks[i]!.recovered, 1),
            f.recoverySeconds === null ? 'none' : num(f.recoverySeconds, 1),
            f.detail,
          ]),
        },
      },
    ],
    charts: [
      {
        id: 'faults-timeline',
        title: 'operations per second under faults',
        xLabel: 's since the load started',
        yLabel: 'per second',
        x: r.timeline.map((t) => t.second),
        series: {
          'jobs finished': r.timeline.map((t) => t.completed),
          acknowledged: r.timeline.map((t) => t.acknowledged),
          'failed exchanges': r.timeline.map((t) => t.errors),
        },
        marks,
      },
    ],
    line: r.line,
  };
}

/** The page's sections in the order of `npm run bench`, and the benchmarks without a result file. */
export function sectionsOf(results: Map<string, AnyResult>): { sections: Section[]; missing: string[] } {
  const sections: Section[] = [];
  const missing: string[] = [];
  for (const { name, command } of benchmarks) {
    const r = results.get(name);
    if (!r) missing.push(command);
    else if (r.kind === 'scale') sections.push(scaleSection(r, name));
    else if (r.kind === 'faults') sections.push(faultsSection(r));
    else sections.push(benchSection(r));
  }
  return { sections, missing };
}

const mdCell = (c: Cell) => String(c).replaceAll('|', '\\|').replaceAll('\n', ' ');
const mdTable = ({ head, rows }: Table) =>
  [
    `| ${head.map(mdCell).join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`),
  ].join('\n');

export function renderMarkdown(results: Map<string, AnyResult>, generatedAt = new Date()): string {
  const { sections, missing } = sectionsOf(results);
  const out = [
    '# Stockflow benchmark results',
    '',
    `Generated ${at(generatedAt.toISOString())} UTC by \`npm run bench:report\` from \`bench/out/*.json\`; ` +
      'charts in [results.html](results.html) (one file, works offline). Each benchmark runs against a ' +
      'baseline measured in the same run: on a shared machine the ratios mean more than the absolute figures.',
    '',
    '| benchmark | headline |',
    '|---|---|',
    ...sections.map((s) => `| [${mdCell(s.heading)}](#${s.id}) | ${mdCell(s.headline)} |`),
    '',
  ];
  if (missing.length)
    out.push(`Not in this report (no result file yet): ${missing.map((c) => `\`${c}\``).join(', ')}.`, '');
  for (const s of sections) {
    out.push(`<a id="${s.id}"></a>`, `## ${s.heading}`, '', ...s.intro.flatMap((t) => [t, '']));
    for (const { caption, table } of s.tables) out.push(`${caption}:`, '', mdTable(table), '');
    if (s.charts.length)
      out.push(`Charts: ${s.charts.map((c) => `[${c.title}](results.html#${c.id})`).join(', ')}.`, '');
    if (s.line) out.push('```', s.line, '```', '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/** Draws every `.chart` from the JSON block: lines, or bars for cases; fault windows shaded. */
const chartScript = `'use strict';
(function () {
  var charts = JSON.parse(document.getElementById('chart-data').textContent);
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
  function faultMarks(marks) {
    return function (u) {
      var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      ctx.save();
      marks.forEach(function (m) {
        var x0 = u.valToPos(m.from, 'x', true), x1 = u.valToPos(Math.max(m.to, m.from + 0.5), 'x', true);
        ctx.fillStyle = 'rgba(214, 39, 40, 0.15)';
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        ctx.fillStyle = '#a00';
        ctx.font = '11px sans-serif';
        ctx.textAlign = 'left';
        ctx.fillText(m.name, x0 + 2, top + 12);
        if (m.recovered !== null) {
          var xr = u.valToPos(m.recovered, 'x', true);
          ctx.strokeStyle = '#2ca02c';
          ctx.setLineDash([4, 3]);
          ctx.beginPath(); ctx.moveTo(xr, top); ctx.lineTo(xr, top + height); ctx.stroke();
        }
      });
      ctx.restore();
    };
  }
  // Cases as grouped bars: case i, series j drawn at x = i * (k + 1) + j, the case's name under its group.
  function grouped(c, names) {
    var k = names.length, x = [], cols = names.map(function () { return []; });
    c.x.forEach(function (_, i) {
      names.forEach(function (name, j) {
        x.push(i * (k + 1) + j);
        cols.forEach(function (col, m) { col.push(m === j ? c.series[name][i] : null); });
      });
    });
    var centre = (k - 1) / 2, label = function (v) { return c.labels[Math.round((v - centre) / (k + 1))] || ''; };
    return { data: [x].concat(cols), range: [-1, c.x.length * (k + 1) - 1], label: label,
      splits: c.x.map(function (_, i) { return i * (k + 1) + centre; }) };
  }
  document.querySelectorAll('.chart').forEach(function (el) {
    var c = charts[el.getAttribute('data-chart')];
    if (!c) { el.textContent = 'No data.'; return; }
    var names = Object.keys(c.series);
    var g = c.bars ? grouped(c, names) : null;
    var bars = g ? uPlot.paths.bars({ size: [0.9] }) : null;
    var series = [{ label: c.xLabel, value: g ? function (u, v) { return v == null ? '' : g.label(v); } : undefined }]
      .concat(names.map(function (name, i) {
        var s = { label: name, stroke: palette[i % palette.length], width: 2, spanGaps: false };
        if (bars) { s.paths = bars; s.fill = palette[i % palette.length] + 'aa'; s.points = { show: false }; }
        return s;
      }));
    var axes = [
      g ? { label: c.xLabel, splits: function () { return g.splits; }, values: function (u, vals) { return vals.map(function (v) { return g.label(v).slice(0, 24); }); } }
        : { label: c.xLabel, splits: c.discrete ? function () { return c.x; } : undefined },
      { label: c.yLabel, size: 60 }
    ];
    var opts = { title: c.title, width: Math.min(960, el.clientWidth || 960), height: 300, series: series, axes: axes,
      scales: { x: { time: false, range: g ? g.range : undefined }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } } };
    if (c.marks && c.marks.length) opts.hooks = { draw: [faultMarks(c.marks)] };
    new uPlot(opts, g ? g.data : [c.x].concat(names.map(function (n) { return c.series[n]; })), el);
    el.setAttribute('data-rendered', 'true');
  });
})();
`;

const styles = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
section { margin-bottom: 2.5rem; }
pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; }
.chart { margin: 0.5rem 0 1.5rem; }
`;

/** `</script` cannot appear inside an inline script. */
const inlineScript = (code: string) => code.replaceAll('</script', '<\\/script');

export function renderHtml(results: Map<string, AnyResult>, generatedAt = new Date()): string {
  const { sections, missing } = sectionsOf(results);
  const assets = opsAssets();
  const charts = Object.fromEntries(sections.flatMap((s) => s.charts.map((c) => [c.id, c])));
  const htmlTable = (caption: string, { head, rows }: Table) =>
    `<table><caption>${escapeHtml(caption)}</caption><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`).join('\n')}</tbody></table>`;
  const body = sections
    .map(
      (s) => `<section id="${s.id}"><h2>${escapeHtml(s.heading)}</h2>
${s.intro.map((t) => `<p>${escapeHtml(t)}</p>`).join('\n')}
${s.tables.map((t) => htmlTable(t.caption, t.table)).join('\n')}
${s.charts.map((c) => `<div class="chart" id="${c.id}" data-chart="${c.id}"></div>`).join('\n')}
${s.line ? `<pre>${escapeHtml(s.line)}</pre>` : ''}</section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stockflow benchmark results</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${assets.get('uPlot.min.css')!.body}</style>
<style>${styles}</style>
</head><body>
<h1>Stockflow benchmark results</h1>
<p>Generated ${escapeHtml(at(generatedAt.toISOString()))} UTC by <code>npm run bench:report</code> from <code>bench/out/*.json</code>.
Each benchmark runs against a baseline measured in the same run: on a shared machine the ratios mean more than the absolute figures.</p>
${missing.length ? `<p>Not in this report (no result file yet): ${missing.map((c) => `<code>${escapeHtml(c)}</code>`).join(', ')}.</p>` : ''}
${body}
<script type="application/json" id="chart-data">${JSON.stringify(charts).replace(/</g, '\\u003c')}</script>
<script>${inlineScript(assets.get('uPlot.iife.min.js')!.body)}</script>
<script>${inlineScript(chartScript)}</script>
</body></html>
`;
}
