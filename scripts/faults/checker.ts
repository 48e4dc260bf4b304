import type { Operation } from './client.js';
import type { Receipt } from './receiver.js';

/**
 * The history checker: it decides from the recorded history (what the client sent and was told)
 * and the platform's HTTP API only, never from its tables or Redis. Each check is a sentence of
 * docs/reliability.md.
 */

export type ApiGet = (path: string) => Promise<unknown>;

export interface FaultWindow {
  name: string;
  /** When the fault was injected, and when the faulty part was healthy again (equal for a kill). */
  at: number;
  healedAt: number;
  /** What the fault applies to: API jobs, webhook deliveries or purchase orders. */
  measure: 'jobs' | 'webhooks' | 'suppliers';
  notes: string[];
}

export interface Verdict {
  accepted: number;
  lost: number;
  lostOps: { op: number; kind: string; jobId?: string; outcome?: string; code?: string }[];
  doubleApplied: number;
  doubleAppliedJobs: string[];
  oversold: number;
  drift: number;
  driftLevels: string[];
  webhookEvents: number;
  webhookMissing: number;
  webhookDuplicates: number;
  attemptsUnrecorded: number;
  unrecordedDeliveries: string[];
  poDuplicates: number;
  purchaseOrders: number;
  recovery: { name: string; seconds: number | null; detail: string }[];
  maxRecoverySeconds: number;
  /** How late webhook retries came after their schedule allowed (ms, beyond the jitter's bound). */
  retries: { count: number; p50LateMs: number; p99LateMs: number; maxLateMs: number };
  /** The most 2xx deliveries the receiver took in one 5-second window, per second. */
  peakDeliveriesPerSecond: number;
  resubmitted: number;
}

interface PurchaseOrderView {
  number: string;
  status: string;
  createdAt: string;
  acknowledgedAt: string | null;
  location: string;
  lines: { sku: string; quantity: number; explanation?: { incoming?: number } }[];
}

const orderNumberOf = (body: unknown) =>
  (body as { purchaseOrder?: { number?: string } } | undefined)?.purchaseOrder?.number;

const movementKindsOnHand = (kind: string) => kind !== 'reserve' && kind !== 'release';
const movementKindsReserved = (kind: string) => kind === 'reserve' || kind === 'release' || kind === 'commit';

interface Movement {
  id: number;
  kind: string;
  sku: string;
  location: string;
  delta: number;
  onHandAfter: number;
  reservedAfter: number;
  reservationId: string | null;
  jobId: string | null;
}

/** Every ledger row, newest first, through the keyset pages of GET /api/pms/inventory/history. */
async function readLedger(get: ApiGet): Promise<Movement[]> {
  const rows: Movement[] = [];
  let cursor: string | null = null;
  do {
    const page = (await get(
      `/api/pms/inventory/history?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    )) as { items: Movement[]; nextCursor: string | null };
    rows.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return rows;
}

async function ledgerHead(get: ApiGet): Promise<number> {
  const page = (await get('/api/pms/inventory/history?limit=1')) as { items: Movement[] };
  return page.items[0]?.id ?? 0;
}

/** Movement ids a job's result lists (adjust, transfer, set, order changes, inbound outcomes). */
function movementIdsIn(result: unknown, into = new Set<number>()): Set<number> {
  if (Array.isArray(result)) for (const item of result) movementIdsIn(item, into);
  else if (result && typeof result === 'object') {
    const o = result as Record<string, unknown>;
    if (typeof o.id === 'number' && typeof o.kind === 'string' && typeof o.delta === 'number') into.add(o.id);
    for (const value of Object.values(o)) movementIdsIn(value, into);
  }
  return into;
}

/** Whether a result says which movements its job wrote (a `movements` list or a `movement`). */
function listsMovements(result: unknown): boolean {
  if (Array.isArray(result)) return result.some(listsMovements);
  if (!result || typeof result !== 'object') return false;
  const o = result as Record<string, unknown>;
  return Array.isArray(o.movements) || 'movement' in o || Object.values(o).some(listsMovements);
}

async function inBatches<T, R>(items: T[], size: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size)
    out.push(...(await Promise.all(items.slice(i, i + size).map(run))));
  return out;
}

export async function checkHistory(input: {
  operations: Operation[];
  receipts: Receipt[];
  get: ApiGet;
  endpointId: string;
  endpointAfterSeq: number;
  supplierOrders: { idempotencyKey: string; status: number; body: unknown; at: number }[];
  faults: FaultWindow[];
  skus: string[];
  /** WEBHOOK_RETRY_SCHEDULE in ms and WEBHOOK_RETRY_JITTER. */
  retrySchedule: number[];
  retryJitter: number;
}): Promise<Verdict> {
  const { operations, get } = input;
  // 1. Every acknowledged request ended completed, or failed with a domain code. The job's end is
  //    read once more from the API, not taken from the client's polls alone.
  const acked = operations.filter((op) => op.ack);
  const finals = await inBatches(acked, 20, async (op) => {
    if (!op.ack?.jobId) return { op, state: op.outcome, code: op.code, result: op.result };
    const job = (await get(`/api/jobs/${op.ack.jobId}`).catch(() => undefined)) as
      | { state?: string; error?: { code?: string } | null; result?: unknown }
      | undefined;
    // A job Redis no longer has (its record aged out, or a loss the client recovered) keeps what
    // the client saw end it.
    if (!job) return { op, state: op.outcome, code: op.code, result: op.result };
    return { op, state: job.state, code: job.error?.code, result: job.result ?? op.result };
  });
  const lostOps = finals
    .filter((f) => !(f.state === 'completed' || (f.state === 'failed' && f.code && f.code !== 'job_failed')))
    .map((f) => ({
      op: f.op.op,
      kind: f.op.kind,
      jobId: f.op.ack?.jobId,
      outcome: f.state,
      code: f.code,
    }));

  // 2. No movement applied twice: each job's ledger rows are the ones its result lists (or, for a
  //    reservation, all carry its one reservation id); a failed job has none.
  let ledger: Movement[] = [];
  let levels: { sku: string; locations: { location: string; onHand: number; reserved: number }[] }[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    const before = await ledgerHead(get);
    ledger = await readLedger(get);
    levels = [];
    for (let i = 0; i < input.skus.length; i += 100) {
      const page = (await get(`/api/pms/inventory/status?sku=${input.skus.slice(i, i + 100).join(',')}`)) as {
        items: typeof levels;
      };
      levels.push(...page.items);
    }
    if ((await ledgerHead(get)) === before) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const rowsByJob = new Map<string, Movement[]>();
  for (const row of ledger) {
    if (!row.jobId) continue;
    rowsByJob.set(row.jobId, [...(rowsByJob.get(row.jobId) ?? []), row]);
  }
  const doubleAppliedJobs: string[] = [];
  for (const f of finals) {
    const jobId = f.op.ack?.jobId;
    if (!jobId) continue;
    const rows = rowsByJob.get(jobId) ?? [];
    if (f.state === 'failed') {
      if (rows.length > 0) doubleAppliedJobs.push(`${jobId} (failed, ${rows.length} rows)`);
      continue;
    }
    const listed = movementIdsIn(f.result);
    const reservationId = (f.result as { id?: unknown } | undefined)?.id;
    if (listsMovements(f.result)) {
      const extra = rows.filter((r) => !listed.has(r.id));
      if (extra.length > 0) doubleAppliedJobs.push(`${jobId} (${extra.length} rows beyond its result)`);
    } else if (f.op.kind === 'reservation.create' && typeof reservationId === 'string') {
      const other = rows.filter((r) => r.reservationId !== reservationId);
      if (other.length > 0) doubleAppliedJobs.push(`${jobId} (rows of another reservation)`);
    }
  }

  // 3. No sku oversold: no ledger row ever left on hand below 0 or reserved above on hand, and no
  //    level is so now.
  let oversold = ledger.filter(
    (r) => r.onHandAfter < 0 || r.reservedAfter < 0 || r.reservedAfter > r.onHandAfter,
  ).length;
  for (const status of levels)
    for (const l of status.locations)
      if (l.onHand < 0 || l.reserved < 0 || l.reserved > l.onHand) oversold += 1;

  // 4. Ledger = levels for every sku × location.
  const sums = new Map<string, { onHand: number; reserved: number }>();
  for (const row of ledger) {
    const key = `${row.sku}@${row.location}`;
    const sum = sums.get(key) ?? { onHand: 0, reserved: 0 };
    if (movementKindsOnHand(row.kind)) sum.onHand += row.delta;
    if (movementKindsReserved(row.kind)) sum.reserved += row.delta;
    sums.set(key, sum);
  }
  const driftLevels: string[] = [];
  for (const status of levels) {
    for (const l of status.locations) {
      const key = `${status.sku}@${l.location}`;
      const sum = sums.get(key) ?? { onHand: 0, reserved: 0 };
      if (sum.onHand !== l.onHand || sum.reserved !== l.reserved)
        driftLevels.push(`${key}: level ${l.onHand}/${l.reserved}, ledger ${sum.onHand}/${sum.reserved}`);
    }
  }

  // 5. Every event the endpoint subscribes to reached the receiver (2xx) at least once; extra 2xx
  //    receipts of one webhook-id are duplicates (allowed: at least once); every attempt the
  //    receiver saw is in the delivery's attempt log.
  const events: { id: string; seq: number; occurredAt: string }[] = [];
  let after = input.endpointAfterSeq;
  for (;;) {
    const page = (await get(`/api/pms/events?after=${after}&limit=1000`)) as {
      items: { id: string; seq: number; type: string; occurredAt: string }[];
      nextAfter: number;
    };
    events.push(...page.items.filter((e) => !e.type.startsWith('webhook.')));
    if (page.items.length === 0 || page.nextAfter === after) break;
    after = page.nextAfter;
  }
  const okById = new Map<string, number>();
  const seenById = new Map<string, number>();
  const firstOkAt = new Map<string, number>();
  for (const r of input.receipts) {
    seenById.set(r.webhookId, (seenById.get(r.webhookId) ?? 0) + 1);
    if (r.status >= 200 && r.status < 300) {
      okById.set(r.webhookId, (okById.get(r.webhookId) ?? 0) + 1);
      if (!firstOkAt.has(r.webhookId)) firstOkAt.set(r.webhookId, r.at);
    }
  }
  // A delivery still in flight is not missing: give the last ones up to a minute to arrive.
  let missing = events.filter((e) => !okById.has(e.id));
  for (let waited = 0; missing.length > 0 && waited < 60_000; waited += 2000) {
    await new Promise((r) => setTimeout(r, 2000));
    for (const r of input.receipts)
      if (r.status >= 200 && r.status < 300 && !okById.has(r.webhookId)) {
        okById.set(r.webhookId, 1);
        firstOkAt.set(r.webhookId, r.at);
      }
    missing = missing.filter((e) => !okById.has(e.id));
  }
  const duplicates = [...okById.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
  const deliveries: { eventId: string; attempts: number; status: string; id: string }[] = [];
  let before: number | null = null;
  do {
    const page = (await get(
      `/api/webhooks/endpoints/${input.endpointId}/deliveries?limit=500${before ? `&before=${before}` : ''}`,
    )) as { items: typeof deliveries; nextBefore: number | null };
    deliveries.push(...page.items);
    before = page.nextBefore;
  } while (before);
  const unrecordedDeliveries = deliveries
    .filter((d) => (seenById.get(d.eventId) ?? 0) > d.attempts)
    .map((d) => `${d.id}: receiver saw ${seenById.get(d.eventId)}, log has ${d.attempts}`);

  // 6. No purchase order sent twice for one need: one supplier Idempotency-Key per order number,
  //    and no second order line for a sku × location planned without counting an open earlier one.
  const orders: PurchaseOrderView[] = [];
  let cursor: string | null = null;
  do {
    const page = (await get(
      `/api/pms/purchase-orders?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    )) as { items: typeof orders; nextCursor: string | null };
    orders.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  const keysByNumber = new Map<string, Set<string>>();
  for (const order of input.supplierOrders) {
    const number = orderNumberOf(order.body);
    if (!number) continue;
    keysByNumber.set(number, (keysByNumber.get(number) ?? new Set()).add(order.idempotencyKey));
  }
  let poDuplicates = [...keysByNumber.values()].filter((keys) => keys.size > 1).length;
  const open = new Map<string, number>();
  for (const order of [...orders].sort((a, b) => a.createdAt.localeCompare(b.createdAt))) {
    if (order.status === 'cancelled' || order.status === 'failed') continue;
    for (const line of order.lines) {
      const key = `${line.sku}@${order.location}`;
      const earlier = open.get(key) ?? 0;
      if (earlier > 0 && (line.explanation?.incoming ?? 0) < earlier) poDuplicates += 1;
      open.set(key, earlier + line.quantity);
    }
  }

  // 7. Recovery per fault.
  const recovery = input.faults.map((fault) =>
    recoveryOf(fault, operations, events, firstOkAt, input, orders),
  );
  const measured = recovery.map((r) => r.seconds).filter((s): s is number => s !== null);

  // Retries: the gap after a failed attempt against the schedule's delay (at its longest jitter).
  const byId = new Map<string, Receipt[]>();
  for (const r of input.receipts) byId.set(r.webhookId, [...(byId.get(r.webhookId) ?? []), r]);
  const late: number[] = [];
  for (const list of byId.values()) {
    for (let k = 0; k + 1 < list.length; k++) {
      if (list[k]!.status < 300) continue;
      const allowed = (input.retrySchedule[k] ?? input.retrySchedule.at(-1)!) * (1 + input.retryJitter);
      late.push(Math.max(0, list[k + 1]!.at - list[k]!.at - allowed));
    }
  }
  late.sort((a, b) => a - b);
  const at = (p: number) => late[Math.min(late.length - 1, Math.floor(p * late.length))] ?? 0;
  const windows = new Map<number, number>();
  for (const r of input.receipts)
    if (r.status < 300) windows.set(Math.floor(r.at / 5000), (windows.get(Math.floor(r.at / 5000)) ?? 0) + 1);
  return {
    accepted: acked.length,
    lost: lostOps.length,
    lostOps,
    doubleApplied: doubleAppliedJobs.length,
    doubleAppliedJobs,
    oversold,
    drift: driftLevels.length,
    driftLevels,
    webhookEvents: events.length,
    webhookMissing: missing.length,
    webhookDuplicates: duplicates,
    attemptsUnrecorded: unrecordedDeliveries.length,
    unrecordedDeliveries,
    poDuplicates,
    purchaseOrders: orders.length,
    recovery,
    maxRecoverySeconds: measured.length ? Math.max(...measured) : 0,
    retries: { count: late.length, p50LateMs: at(0.5), p99LateMs: at(0.99), maxLateMs: late.at(-1) ?? 0 },
    peakDeliveriesPerSecond: Math.max(0, ...windows.values()) / 5,
    resubmitted: operations.filter((op) => op.resubmits > 0).length,
  };
}

/**
 * Recovery of one fault, from when it was healed (the kill itself for a process killed and
 * restarted; the end of a stall or an outage):
 * - jobs: every job acknowledged before the fault and not finished at it has finished, and a job
 *   acknowledged after the heal has completed;
 * - webhooks: every event written before the heal has reached the receiver;
 * - suppliers: every purchase order sent during the outage was acknowledged.
 */
function recoveryOf(
  fault: FaultWindow,
  operations: Operation[],
  events: { id: string; occurredAt: string }[],
  firstOkAt: Map<string, number>,
  input: { supplierOrders: { idempotencyKey: string; status: number; at: number; body: unknown }[] },
  orders: PurchaseOrderView[],
): { name: string; seconds: number | null; detail: string } {
  const from = fault.healedAt;
  if (fault.measure === 'webhooks') {
    const due = events.filter((e) => Date.parse(e.occurredAt) < from);
    const times = due.map((e) => firstOkAt.get(e.id));
    if (times.some((t) => t === undefined))
      return { name: fault.name, seconds: null, detail: 'events never delivered' };
    const last = Math.max(from, ...(times as number[]));
    return { name: fault.name, seconds: (last - from) / 1000, detail: `${due.length} events delivered` };
  }
  if (fault.measure === 'suppliers') {
    const during = orders.filter((o) => {
      const created = Date.parse(o.createdAt);
      return created >= fault.at && created <= fault.healedAt;
    });
    if (during.some((o) => !o.acknowledgedAt))
      return { name: fault.name, seconds: null, detail: `${during.length} orders, not all acknowledged` };
    const last = Math.max(from, ...during.map((o) => Date.parse(o.acknowledgedAt!)));
    const tries = input.supplierOrders.filter((o) =>
      during.some((d) => d.number === orderNumberOf(o.body)),
    ).length;
    return {
      name: fault.name,
      seconds: (last - from) / 1000,
      detail: `${during.length} order(s) placed in the stall, acknowledged after ${tries} request(s) reached the supplier`,
    };
  }
  // Every acknowledged request begun before the heal that had not ended when the fault began.
  const inFlight = operations.filter(
    (op) => op.ack && op.startedAt < from && (op.finishedAt === undefined || op.finishedAt > fault.at),
  );
  const resubmitted = operations.filter((op) =>
    op.resubmittedAt.some((t) => t >= fault.at && t <= fault.healedAt + 60_000),
  ).length;
  const after = operations
    .filter((op) => op.ack && op.ack.at >= from && op.outcome === 'completed' && op.finishedAt)
    .map((op) => op.finishedAt!);
  const firstAfter = after.length ? Math.min(...after) : undefined;
  if (firstAfter === undefined || inFlight.some((op) => op.finishedAt === undefined))
    return { name: fault.name, seconds: null, detail: `${inFlight.length} in flight; not all finished` };
  const last = Math.max(firstAfter, ...inFlight.map((op) => op.finishedAt!));
  return {
    name: fault.name,
    seconds: Math.max(0, last - from) / 1000,
    detail:
      `${inFlight.length} jobs in flight at the fault` +
      (resubmitted ? `; ${resubmitted} forgotten by Redis and resubmitted with their key` : ''),
  };
}
