import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * What the /ops page loads besides itself, all served by the platform (no CDN): uPlot from its npm
 * package, and the page's own chart script and styles. The chart script reads the JSON block the
 * page carries and draws one chart per `.chart` container; the tables above it work without it.
 */
const chartScript = `'use strict';
(function () {
  var data = JSON.parse(document.getElementById('chart-data').textContent);
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  var seconds = function (day) { return Date.parse(day.length === 10 ? day + 'T00:00:00Z' : day) / 1000; };
  function draw(el, title, x, named, opts) {
    var names = Object.keys(named);
    var points = names.reduce(function (n, k) { return n + named[k].length; }, 0);
    el.setAttribute('data-points', String(points));
    if (x.length === 0 || names.length === 0) { el.textContent = 'No data yet.'; return; }
    var series = [{}].concat(names.map(function (name, i) {
      return { label: name, stroke: palette[i % palette.length], width: 2 };
    }));
    new uPlot(Object.assign({ title: title, width: Math.min(900, el.clientWidth || 900), height: 260, series: series,
      scales: { x: { time: (opts && opts.time) !== false } } }, opts || {}),
      [x].concat(names.map(function (n) { return named[n]; })), el);
    el.setAttribute('data-rendered', 'true');
  }
  document.querySelectorAll('.chart').forEach(function (el) {
    var kind = el.getAttribute('data-chart');
    if (kind === 'value') draw(el, 'Stock value (minor units)', data.days.map(seconds), data.value);
    if (kind === 'movements') draw(el, 'Units moved per day', data.days.map(seconds), data.movements);
    if (kind === 'jobs') draw(el, 'Job attempts per hour', data.jobs.map(function (h) { return seconds(h.hour); }),
      { completed: data.jobs.map(function (h) { return h.completed; }), failed: data.jobs.map(function (h) { return h.failed; }) });
    if (kind === 'webhooks') draw(el, 'Webhook success rate (%)', data.webhooks.map(function (_, i) { return i; }),
      { 'success rate': data.webhooks.map(function (w) { return w.successRate === null ? null : w.successRate * 100; }) },
      { time: false });
  });
})();
`;

const styles = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
section { margin-bottom: 2rem; }
.chart { max-width: 900px; }
`;

const require = createRequire(import.meta.url);
const fromUplot = (file: string) => readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8');

/** Every asset by file name, with its content type; read once. */
export function opsAssets(): Map<string, { type: string; body: string }> {
  return new Map([
    ['uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', body: fromUplot('uPlot.iife.min.js') }],
    ['uPlot.min.css', { type: 'text/css; charset=utf-8', body: fromUplot('uPlot.min.css') }],
    ['ops.js', { type: 'text/javascript; charset=utf-8', body: chartScript }],
    ['ops.css', { type: 'text/css; charset=utf-8', body: styles }],
  ]);
}
