import type { Knex } from 'knex';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import { setJobContext } from '../db/job-context.js';
import { appendEvent } from '../events/outbox.js';
import { queueNames } from '../queues/job.js';
import type { Queues } from '../queues/queues.js';
import { redisKeys } from '../redis-keys.js';
import type { Alert, AlertRule } from '../schemas/alerts.js';
import { urlForEvents } from '../schemas/event-urls.js';
import { cursors } from '../schemas/fields.js';
import { failuresInLastMinute } from './failure-counts.js';
import { readRouteLatencies } from './latency-windows.js';
import { oldestWaitingSince } from './metrics.js';

/**
 * Alerts the platform raises about itself. One evaluation (a scheduled maintenance job; an
 * advisory lock keeps overlapping runs out) observes every rule, then in one transaction opens
 * the alerts whose condition holds (for long enough, where the rule says so) and resolves the
 * open ones whose condition has been quiet for the hold-down period. A flapping condition keeps
 * its alert open instead of opening it again. Each opening and resolution writes its event
 * (`alert.opened`, `alert.resolved`), so they reach webhooks and streams like any other.
 */

/** A condition that holds now: what its alert will say. */
export type Firing = Pick<Alert, 'rule' | 'subject' | 'labels' | 'value' | 'threshold'> &
  Partial<Pick<Alert, 'details'>>;

interface AlertRow {
  id: string;
  rule: AlertRule;
  subject: string;
  labels: Record<string, string>;
  state: 'open' | 'resolved';
  value: number;
  threshold: number;
  details: Record<string, unknown>;
  opened_at: Date;
  last_true_at: Date;
  resolved_at: Date | null;
}

const toAlert = (row: AlertRow): Alert => ({
  id: row.id,
  rule: row.rule,
  subject: row.subject,
  labels: row.labels,
  state: row.state,
  value: row.value,
  threshold: row.threshold,
  details: row.details,
  openedAt: row.opened_at.toISOString(),
  resolvedAt: row.resolved_at?.toISOString() ?? null,
});

/** The alert of a row just opened or resolved, announced by its event in the same transaction. */
async function announce(trx: Knex, type: 'alert.opened' | 'alert.resolved', row: AlertRow): Promise<Alert> {
  const alert = toAlert(row);
  await appendEvent(trx, { type, aggregate: { type: 'alert', id: alert.id }, data: { alert } });
  return alert;
}

export interface AlertSettings {
  holdDownMs: number;
  /** How long a condition must hold before its alert opens, per rule (default: at once). */
  forMs: Partial<Record<AlertRule, number>>;
}

export const alertSettingsOf = (config: Config): AlertSettings => ({
  holdDownMs: config.ALERT_HOLD_DOWN,
  forMs: { queue_backlog: config.ALERT_QUEUE_WAITING_FOR },
});

const keyOf = (f: { rule: string; subject: string }) => `${f.rule}\u0000${f.subject}`;

/** Observes the conditions kept outside Postgres (queues, failures, latencies). */
export async function observeRedis(
  deps: { config: Config; redis: RedisClient; queues: Queues },
  now: number,
): Promise<Firing[]> {
  const { config } = deps;
  const firing: Firing[] = [];
  const failures = await failuresInLastMinute(deps.redis, redisKeys(config).ops, queueNames, now);
  await Promise.all(
    queueNames.map(async (queue) => {
      const counts = await deps.queues[queue].getJobCounts('wait', 'prioritized');
      const waiting = (counts.wait ?? 0) + (counts.prioritized ?? 0);
      if (waiting > config.ALERT_QUEUE_WAITING_MAX) {
        firing.push({
          rule: 'queue_backlog',
          subject: queue,
          labels: { queue },
          value: waiting,
          threshold: config.ALERT_QUEUE_WAITING_MAX,
        });
      }
      const since = await oldestWaitingSince(deps.queues[queue]);
      const ageSeconds = since === undefined ? 0 : (now - since) / 1000;
      if (ageSeconds * 1000 > config.ALERT_OLDEST_WAITING_MAX) {
        firing.push({
          rule: 'queue_oldest_waiting',
          subject: queue,
          labels: { queue },
          value: Math.round(ageSeconds),
          threshold: config.ALERT_OLDEST_WAITING_MAX / 1000,
        });
      }
      const failed = failures.get(queue) ?? 0;
      if (failed > config.ALERT_FAILED_PER_MINUTE) {
        firing.push({
          rule: 'job_failures',
          subject: queue,
          labels: { queue },
          value: failed,
          threshold: config.ALERT_FAILED_PER_MINUTE,
        });
      }
    }),
  );
  const latencies = await readRouteLatencies(deps.redis, redisKeys(config).ops, {
    thresholdMs: config.ALERT_ROUTE_P99_MS,
    windowMs: config.ALERT_ROUTE_WINDOW,
    now,
  });
  for (const route of latencies) {
    if (route.requests >= config.ALERT_ROUTE_MIN_REQUESTS && route.slower > 0.01 * route.requests) {
      firing.push({
        rule: 'route_latency',
        subject: route.route,
        labels: { route: route.route },
        value: Number.isFinite(route.p99Ms) ? route.p99Ms : 1e9,
        threshold: config.ALERT_ROUTE_P99_MS,
        details: {
          requests: route.requests,
          slowerThanThreshold: route.slower,
          windowSeconds: config.ALERT_ROUTE_WINDOW / 1000,
        },
      });
    }
  }
  return firing;
}

/** Observes the conditions kept in Postgres (endpoints, stock), inside the evaluation's transaction. */
async function observePostgres(trx: Knex): Promise<Firing[]> {
  const endpoints: { id: string; url: string; disabled_reason: string | null; disabled_at: Date | null }[] =
    await trx('webhook_endpoints')
      .where({ status: 'disabled' })
      .select('id', 'url', 'disabled_reason', 'disabled_at');
  const { rows: levels } = await trx.raw<{
    rows: { sku: string; location: string; unreserved: number; safety_stock: number }[];
  }>(
    `select sku, location, on_hand - reserved as unreserved, safety_stock
     from inventory_levels where on_hand - reserved < safety_stock order by sku, location`,
  );
  return [
    ...endpoints.map((e) => ({
      rule: 'webhook_endpoint_disabled' as const,
      subject: e.id,
      labels: { endpointId: e.id },
      value: 1,
      threshold: 0,
      // Redacted here too: the alert list is readable by monitor keys, and the id names the endpoint.
      details: {
        url: urlForEvents(e.url),
        reason: e.disabled_reason,
        disabledAt: e.disabled_at?.toISOString() ?? null,
      },
    })),
    ...levels.map((l) => ({
      rule: 'stock_below_safety' as const,
      subject: `${l.sku}@${l.location}`,
      labels: { sku: l.sku, location: l.location },
      value: l.unreserved,
      threshold: l.safety_stock,
    })),
  ];
}

export interface EvaluationResult {
  /** Another evaluation held the lock: this one changed nothing. */
  skipped: boolean;
  opened: Alert[];
  resolved: Alert[];
  open: number;
}

/**
 * One evaluation at `now`: the Redis-side observations are passed in (so a test can drive the
 * clock), the Postgres-side ones are read in the transaction.
 */
export async function evaluateAlerts(
  db: Knex,
  input: { now: Date; redisFiring: Firing[]; settings: AlertSettings },
): Promise<EvaluationResult> {
  const { now, settings } = input;
  return db.transaction(async (trx) => {
    const { rows } = await trx.raw<{ rows: { locked: boolean }[] }>(
      `select pg_try_advisory_xact_lock(hashtext('stockflow.alerts')) as locked`,
    );
    if (!rows[0]?.locked) return { skipped: true, opened: [], resolved: [], open: 0 };
    await setJobContext(trx, { actor: 'system' });
    const firing = new Map(
      [...input.redisFiring, ...(await observePostgres(trx))].map((f) => [keyOf(f), f] as const),
    );
    const openRows: AlertRow[] = await trx('ops_alerts').where({ state: 'open' }).forUpdate();
    const openByKey = new Map(openRows.map((row) => [keyOf(row), row]));
    const pendingRows: { rule: string; subject: string; since: Date }[] =
      await trx('ops_alert_pending').forUpdate();
    const pendingByKey = new Map(pendingRows.map((row) => [keyOf(row), row]));

    const opened: Alert[] = [];
    const resolved: Alert[] = [];
    for (const [key, f] of firing) {
      const open = openByKey.get(key);
      if (open) {
        await trx('ops_alerts').where({ id: open.id }).update({ last_true_at: now, value: f.value });
        continue;
      }
      const forMs = settings.forMs[f.rule] ?? 0;
      const pending = pendingByKey.get(key);
      if (forMs > 0 && !pending) {
        await trx('ops_alert_pending').insert({ rule: f.rule, subject: f.subject, since: now });
        continue;
      }
      if (pending && now.getTime() - pending.since.getTime() < forMs) continue;
      if (pending) await trx('ops_alert_pending').where({ rule: f.rule, subject: f.subject }).delete();
      const [row] = (await trx('ops_alerts')
        .insert({
          rule: f.rule,
          subject: f.subject,
          labels: JSON.stringify(f.labels),
          value: f.value,
          threshold: f.threshold,
          details: JSON.stringify({
            ...f.details,
            ...(pending ? { pendingSince: pending.since.toISOString() } : {}),
          }),
          opened_at: now,
          last_true_at: now,
        })
        .returning('*')) as AlertRow[];
      opened.push(await announce(trx, 'alert.opened', row!));
    }
    for (const [key, pending] of pendingByKey) {
      if (!firing.has(key)) {
        await trx('ops_alert_pending').where({ rule: pending.rule, subject: pending.subject }).delete();
      }
    }
    for (const [key, row] of openByKey) {
      if (firing.has(key) || now.getTime() - row.last_true_at.getTime() < settings.holdDownMs) continue;
      const [done] = (await trx('ops_alerts')
        .where({ id: row.id })
        .update({ state: 'resolved', resolved_at: now })
        .returning('*')) as AlertRow[];
      resolved.push(await announce(trx, 'alert.resolved', done!));
    }
    return { skipped: false, opened, resolved, open: openByKey.size + opened.length - resolved.length };
  });
}

/** The scheduled evaluation: observe now, then evaluate. */
export async function runAlertEvaluation(
  deps: { config: Config; db: Knex; redis: RedisClient; queues: Queues },
  now = new Date(),
): Promise<{ opened: number; resolved: number; open: number; skipped: boolean }> {
  const redisFiring = await observeRedis(deps, now.getTime());
  const result = await evaluateAlerts(deps.db, { now, redisFiring, settings: alertSettingsOf(deps.config) });
  return {
    opened: result.opened.length,
    resolved: result.resolved.length,
    open: result.open,
    skipped: result.skipped,
  };
}

export interface AlertPage {
  items: Alert[];
  nextCursor: string | null;
}

/** Alerts newest first, optionally of one state and rule (keyset pagination on opened_at, id). */
export async function listAlerts(
  db: Knex,
  query: {
    state?: 'open' | 'resolved';
    rule?: AlertRule;
    limit: number;
    /** The last alert of the page before (decoded by `cursors.alert`). */
    cursor?: { at: string; id: string };
  },
): Promise<AlertPage> {
  const builder = db<AlertRow>('ops_alerts')
    .orderBy([
      { column: 'opened_at', order: 'desc' },
      { column: 'id', order: 'desc' },
    ])
    .limit(query.limit + 1);
  if (query.state) builder.where('state', query.state);
  if (query.rule) builder.where('rule', query.rule);
  const after = query.cursor;
  if (after) builder.whereRaw('(opened_at, id) < (?::timestamptz, ?::uuid)', [after.at, after.id]);
  const rows = (await builder) as AlertRow[];
  const items = rows.slice(0, query.limit).map(toAlert);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor:
      rows.length > query.limit && last ? cursors.alert.encode({ at: last.openedAt, id: last.id }) : null,
  };
}
