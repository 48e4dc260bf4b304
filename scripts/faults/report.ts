import type { FaultWindow, Verdict } from './checker.js';
import type { Operation } from './client.js';

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const table = (rows: (string | number)[][]): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => String(cell ?? '').padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
};

/** The end-to-end latencies of finished jobs: from the first attempt to the job's end. */
export function latencies(operations: Operation[]): { p50: number; p99: number; n: number } {
  const ms = operations
    .filter((op) => op.ack && op.finishedAt !== undefined)
    .map((op) => op.finishedAt! - op.startedAt)
    .sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p99: percentile(ms, 99), n: ms.length };
}

/**
 * Per second from `from` until the last operation ended: jobs finished (completed or failed),
 * acknowledgements, and exchanges that failed (5xx answers, connection errors, timeouts).
 */
export function timeline(operations: Operation[], from: number) {
  const rows: { second: number; completed: number; acknowledged: number; errors: number }[] = [];
  /** Counts one of `what` in the second of `ms` (the set-up before `from` is left out). */
  const count = (ms: number, what: 'completed' | 'acknowledged' | 'errors') => {
    if (ms < from) return;
    const second = Math.floor((ms - from) / 1000);
    while (rows.length <= second)
      rows.push({ second: rows.length, completed: 0, acknowledged: 0, errors: 0 });
    rows[second]![what] += 1;
  };
  for (const op of operations) {
    if (op.ack) count(op.ack.at, 'acknowledged');
    if (op.finishedAt !== undefined && (op.outcome === 'completed' || op.outcome === 'failed'))
      count(op.finishedAt, 'completed');
    for (const a of op.attempts) if (a.error || (a.status ?? 0) >= 500) count(a.at, 'errors');
  }
  return rows;
}

/** The human table, then the notes of each fault, then the machine-readable line (last). */
export function report(input: {
  operations: Operation[];
  verdict: Verdict;
  faults: FaultWindow[];
  seconds: number;
  rate: number;
  notes: string[];
  deliveryRate?: { events: number; deliveries: number; seconds: number };
}): string {
  const { operations, verdict } = input;
  const out: string[] = [];
  const count = (f: (op: Operation) => boolean) => operations.filter(f).length;
  const answers = operations.flatMap((op) => op.attempts);
  const status = (s: number) => answers.filter((a) => a.status === s).length;
  out.push(`Fault suite: ${input.seconds.toFixed(0)} s, offered ${input.rate} operations/s`);
  out.push('');
  out.push(
    table([
      ['requests', 'n'],
      ['operations', operations.length],
      ['acknowledged (202, waited answer, inbound 2xx)', verdict.accepted],
      ['  of them waited answers', count((op) => op.ack?.via === 'waited')],
      ['refused at intake (4xx, nothing queued)', count((op) => op.outcome === 'refused')],
      ['abandoned (never acknowledged within the give-up time)', count((op) => op.outcome === 'abandoned')],
      ['HTTP exchanges (submissions and polls)', answers.length],
      [
        '  client retries of a submission',
        answers.filter((a) => a.purpose === 'submit').length - operations.length,
      ],
      ['  connection errors / timeouts', answers.filter((a) => a.error).length],
      ['  503 answers', status(503)],
      ['  other 5xx answers', answers.filter((a) => (a.status ?? 0) >= 500 && a.status !== 503).length],
      ['  jobs resubmitted after Redis forgot them (404)', verdict.resubmitted],
    ]),
  );
  const serverErrors = new Map<string, number>();
  for (const op of operations)
    for (const a of op.attempts)
      if ((a.status ?? 0) >= 500 && a.status !== 503) {
        const key = `${a.status} on ${a.purpose === 'poll' ? 'GET /api/jobs/:id' : `${op.method} ${op.kind}`}`;
        serverErrors.set(key, (serverErrors.get(key) ?? 0) + 1);
      }
  for (const [what, n] of serverErrors) out.push(`  5xx other than 503: ${n} x ${what}`);
  out.push('');
  const byCode = new Map<string, number>();
  for (const op of operations) {
    if (!op.ack) continue;
    const key = op.outcome === 'completed' ? 'completed' : `${op.outcome}:${op.code ?? '-'}`;
    byCode.set(key, (byCode.get(key) ?? 0) + 1);
  }
  out.push(table([['jobs by outcome', 'n'], ...[...byCode].sort((a, b) => b[1] - a[1])]));
  out.push('');
  const lat = latencies(operations);
  out.push(`end to end (first attempt -> job finished), ${lat.n} jobs: p50 ${lat.p50} ms, p99 ${lat.p99} ms`);
  if (input.deliveryRate) {
    const d = input.deliveryRate;
    out.push(
      `webhooks: events ${(d.events / d.seconds).toFixed(1)}/s on average over ${d.seconds.toFixed(0)} s of load; ` +
        `deliveries (2xx) at most ${verdict.peakDeliveriesPerSecond.toFixed(1)}/s in a 5 s window`,
    );
  }
  const r = verdict.retries;
  out.push(
    `webhook retries: ${r.count}; late beyond schedule + jitter: p50 ${r.p50LateMs} ms, p99 ${r.p99LateMs} ms, max ${r.maxLateMs} ms`,
  );
  out.push('');
  out.push(
    table([
      ['fault', 'recovery s', 'detail'],
      ...verdict.recovery.map((r) => [r.name, r.seconds === null ? 'none' : r.seconds.toFixed(1), r.detail]),
    ]),
  );
  out.push('');
  for (const fault of input.faults) for (const note of fault.notes) out.push(`- ${fault.name}: ${note}`);
  for (const note of input.notes) out.push(`- ${note}`);
  out.push('');
  out.push(
    table([
      ['invariant', 'n'],
      ['lost (acknowledged, not completed or failed with a domain code)', verdict.lost],
      ['applied twice', verdict.doubleApplied],
      ['oversold', verdict.oversold],
      ['ledger drift (sku x location)', verdict.drift],
      [`webhook events missing (of ${verdict.webhookEvents})`, verdict.webhookMissing],
      ['webhook duplicates (extra 2xx receipts, allowed)', verdict.webhookDuplicates],
      ['deliveries whose attempt log misses an attempt', verdict.attemptsUnrecorded],
      [`purchase orders sent twice for one need (of ${verdict.purchaseOrders})`, verdict.poDuplicates],
    ]),
  );
  const details = [
    ...verdict.lostOps.slice(0, 10).map((l) => `lost: ${JSON.stringify(l)}`),
    ...verdict.doubleAppliedJobs.slice(0, 10).map((j) => `applied twice: ${j}`),
    ...verdict.driftLevels.slice(0, 10).map((d) => `drift: ${d}`),
    ...verdict.unrecordedDeliveries.slice(0, 10).map((d) => `attempt not recorded: ${d}`),
  ];
  if (details.length) out.push('', ...details);
  out.push('');
  out.push(
    `accepted=${verdict.accepted} lost=${verdict.lost} double_applied=${verdict.doubleApplied} ` +
      `oversold=${verdict.oversold} drift=${verdict.drift} webhook_missing=${verdict.webhookMissing} ` +
      `webhook_duplicates=${verdict.webhookDuplicates} po_duplicates=${verdict.poDuplicates} ` +
      `max_recovery_s=${verdict.maxRecoverySeconds.toFixed(1)}`,
  );
  return out.join('\n');
}
