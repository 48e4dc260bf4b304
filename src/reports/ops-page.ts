import type { Knex } from 'knex';
import { activityForOps } from './activity-reports.js';
import { openReportSnapshot } from './answer.js';
import { topSellers } from './flow-reports.js';
import { foldMovements, pendingMovements } from './ledger-replay.js';
import { lowStockRows } from './stock-reports.js';
import { valuationTotals, valueLevels } from './stock-valuation.js';
import { shownMoney } from './valuation.js';

/**
 * The operator page (GET /ops): server-rendered tables, readable without JavaScript; each chart is
 * a table's data again, drawn by uPlot (served by the platform, no CDN) from a JSON block. Every
 * number links to the report rows behind it.
 */

export const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

const link = (path: string, params: Record<string, string>, text: string | number) =>
  `<a href="${escapeHtml(`/api/pms/reports/${path}?${new URLSearchParams(params)}`)}">${escapeHtml(String(text))}</a>`;

const dayMs = 86_400_000;
const days = 30;

/** The page, from one snapshot of the reports. */
export async function opsPage(db: Knex): Promise<string> {
  const { trx } = await openReportSnapshot(db);
  try {
    const html = renderOpsPage(await opsData(trx));
    await trx.commit();
    return html;
  } catch (error) {
    await trx.rollback().catch(() => undefined);
    throw error;
  }
}

/** Gathers what the page shows (`db` is the snapshot's transaction). */
async function opsData(db: Knex) {
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const dayList = Array.from({ length: days }, (_, i) =>
    new Date(today - (days - 1 - i) * dayMs).toISOString().slice(0, 10),
  );
  const levels = await valueLevels(db, { filter: {} });
  const totals = valuationTotals(levels).filter((t) => t.location === null);
  // Value at each day's end = value now − what the movements after it changed.
  const { rows: changes } = await db.raw<{ rows: { day: string; currency: string; change: number }[] }>(
    `select d.day::text as day, p.price_currency as currency, sum(d.value_in - d.value_out) as change
     from stock_daily d join products p on p.sku = d.sku
     where d.day > ?::date group by 1, 2`,
    [dayList[0]!],
  );
  const currencyOf = new Map(levels.map((l) => [l.sku, l.currency]));
  const fold = await foldMovements(db, await pendingMovements(db, {}));
  for (const { movement, value } of fold.applied) {
    changes.push({
      day: movement.createdAt.toISOString().slice(0, 10),
      currency: currencyOf.get(movement.sku) ?? 'XXX',
      change: value,
    });
  }
  const value: Record<string, number[]> = {};
  for (const total of totals) {
    value[total.currency] = dayList.map((day) =>
      shownMoney(
        total.value -
          changes
            .filter((c) => c.currency === total.currency && c.day > day)
            .reduce((s, c) => s + Number(c.change), 0),
      ),
    );
  }
  const { rows: moved } = await db.raw<{ rows: { day: string; kind: string; units: number }[] }>(
    `select day::text as day, kind, sum(units_in + units_out)::bigint as units from (
       select day, kind, units_in, units_out from stock_daily_totals where day >= ?::date
       union all
       select (created_at at time zone 'UTC')::date, kind, greatest(delta, 0), greatest(-delta, 0) from stock_rollup_pending
     ) m group by 1, 2`,
    [dayList[0]!],
  );
  const movements: Record<string, number[]> = {};
  for (const r of moved) {
    movements[r.kind] ??= dayList.map(() => 0);
    const i = dayList.indexOf(r.day);
    if (i >= 0) movements[r.kind]![i] = r.units;
  }
  const window = { from: new Date(today - (days - 1) * dayMs), to: new Date(today + dayMs) };
  return {
    days: dayList,
    window,
    totals,
    value,
    movements,
    sellers: await topSellers(db, window, 10),
    low: await lowStockRows(db, {}, undefined, { limit: 20 }),
    ...(await activityForOps(db, { from: new Date(Date.now() - dayMs), to: new Date() })),
  };
}

type Ops = Awaited<ReturnType<typeof opsData>>;

const table = (id: string, caption: string, head: string[], rows: string[][]) =>
  `<table id="${id}"><caption>${escapeHtml(caption)}</caption><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>${rows.length ? rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n') : `<tr><td colspan="${head.length}">nothing yet</td></tr>`}</tbody></table>`;

/** The page: tables first, chart containers after each, the data for the charts as JSON (not script). */
function renderOpsPage(ops: Ops): string {
  const window = { from: ops.window.from.toISOString(), to: ops.window.to.toISOString() };
  const dayWindow = (day: string) => ({
    from: `${day}T00:00:00Z`,
    to: new Date(Date.parse(`${day}T00:00:00Z`) + dayMs).toISOString(),
  });
  const kinds = Object.keys(ops.movements).sort();
  const charts = {
    days: ops.days,
    value: ops.value,
    movements: ops.movements,
    jobs: ops.jobHours,
    webhooks: ops.webhooks.map((w) => ({ label: w.url, successRate: w.successRate })),
  };
  const json = JSON.stringify(charts).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stockflow operations</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/ops/assets/uPlot.min.css"><link rel="stylesheet" href="/ops/assets/ops.css">
</head><body>
<h1>Stockflow operations</h1>
<p>Figures as of ${escapeHtml(new Date().toISOString())}. Every number links to the report rows behind it (JSON; add <code>Accept: text/csv</code> for CSV).</p>
<section><h2>Stock value over time</h2>
${table(
  'stock-value',
  'Stock value at the end of each day, per currency (minor units)',
  ['day', ...Object.keys(ops.value)],
  ops.days.map((day, i) => [
    escapeHtml(day),
    ...Object.values(ops.value).map((series) =>
      link('stock-valuation', { at: dayWindow(day).to }, series[i]!),
    ),
  ]),
)}
<div class="chart" data-chart="value"></div></section>
<section><h2>Movements per day by kind</h2>
${table(
  'movements',
  'Units moved (in + out) per day and kind',
  ['day', ...kinds],
  ops.days.map((day, i) => [
    escapeHtml(day),
    ...kinds.map((k) => link('movements', { ...dayWindow(day), groupBy: 'sku' }, ops.movements[k]![i]!)),
  ]),
)}
<div class="chart" data-chart="movements"></div></section>
<section><h2>Top sellers (30 days)</h2>
${table(
  'top-sellers',
  'Net units sold per sku',
  ['sku', 'net sold', 'available', 'days of inventory'],
  ops.sellers.map((s) => [
    escapeHtml(s.sku),
    link('sell-through', { ...window, sku: s.sku }, s.net),
    link('low-stock', { sku: s.sku }, s.available),
    link(
      'sell-through',
      { ...window, sku: s.sku },
      s.daysOfInventory === null ? '—' : s.daysOfInventory.toFixed(1),
    ),
  ]),
)}</section>
<section><h2>Low stock</h2>
${table(
  'low-stock',
  'Levels at or below their reorder point or safety stock',
  ['sku', 'location', 'state', 'available', 'threshold', 'incoming', 'days of cover'],
  ops.low.map((l) => [
    escapeHtml(l.sku),
    escapeHtml(l.location),
    escapeHtml(l.state),
    link('low-stock', { sku: l.sku, location: l.location }, l.available),
    link('low-stock', { sku: l.sku, location: l.location }, l.threshold),
    link('low-stock', { sku: l.sku, location: l.location }, l.incoming),
    link(
      'low-stock',
      { sku: l.sku, location: l.location },
      l.daysOfCover === null ? '—' : l.daysOfCover.toFixed(1),
    ),
  ]),
)}</section>
<section><h2>Queues (24 hours)</h2>
${table(
  'queues',
  'Job attempts per queue: completed and failed for good',
  ['queue', 'completed', 'failed', 'retried'],
  ops.queues.map((q) => [
    escapeHtml(q.queue),
    link('jobs', ops.activityWindow, q.completed),
    link('jobs', ops.activityWindow, q.failed),
    link('jobs', ops.activityWindow, q.retried),
  ]),
)}
<div class="chart" data-chart="jobs"></div></section>
<section><h2>Webhooks (24 hours)</h2>
${table(
  'webhooks',
  'Deliveries and success per endpoint',
  ['endpoint', 'deliveries', 'success rate', 'disabled (s)'],
  ops.webhooks.map((w) => [
    escapeHtml(w.url),
    link('webhooks', ops.activityWindow, w.deliveries),
    link(
      'webhooks',
      ops.activityWindow,
      w.successRate === null ? '—' : `${(w.successRate * 100).toFixed(1)} %`,
    ),
    link('webhooks', ops.activityWindow, Math.round(w.disabledSeconds)),
  ]),
)}
<div class="chart" data-chart="webhooks"></div></section>
<script type="application/json" id="chart-data">${json}</script>
<script src="/ops/assets/uPlot.iife.min.js"></script><script src="/ops/assets/ops.js"></script>
</body></html>`;
}
