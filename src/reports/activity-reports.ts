import type { Knex } from 'knex';
import { z } from 'zod';
import { reportCursor } from '../schemas/fields.js';
import { checkWindow, type Window, windowOf, windowParams } from './params.js';
import { defineReport, inMemoryRows } from './report.js';

const textKey = z.string().max(200);
const windowQuery = z.object(windowParams);

interface ReservationDay {
  day: string;
  created: number;
  committed: number;
  released: number;
  expired: number;
  meanSecondsToCommit: number | null;
}

export const reservations = defineReport({
  name: 'reservations',
  summary: 'Reservations created, committed, released and expired per day; mean time to commit',
  formula:
    'created counts reservations by the UTC day of created_at; committed, released and expired by the day they closed (closed_at) in that status; mean time to commit = mean of closed_at − created_at of those committed that day.',
  edgeRules: ['a day with no commit has meanSecondsToCommit null', 'days with nothing are left out'],
  query: windowQuery,
  check: checkWindow,
  cursor: reportCursor('reservations', z.tuple([textKey])),
  key: (r: ReservationDay) => [r.day],
  columns: [
    { name: 'day', value: (r: ReservationDay) => r.day, text: true },
    { name: 'created', value: (r) => r.created },
    { name: 'committed', value: (r) => r.committed },
    { name: 'released', value: (r) => r.released },
    { name: 'expired', value: (r) => r.expired },
    { name: 'mean_seconds_to_commit', value: (r) => r.meanSecondsToCommit },
  ],
  async run(db, query, page) {
    const { from, to } = windowOf(query);
    const { rows } = await db.raw<{ rows: ReservationDay[] }>(
      `select day::text as day, sum(created)::int as created, sum(committed)::int as committed,
              sum(released)::int as released, sum(expired)::int as expired,
              avg(to_commit) filter (where to_commit is not null) as "meanSecondsToCommit"
       from (
         select (created_at at time zone 'UTC')::date as day, 1 as created, 0 as committed, 0 as released,
                0 as expired, null::float8 as to_commit
         from reservations where created_at >= ? and created_at < ?
         union all
         select (closed_at at time zone 'UTC')::date, 0, (status = 'committed')::int, (status = 'released')::int,
                (status = 'expired')::int,
                case when status = 'committed' then extract(epoch from closed_at - created_at)::float8 end
         from reservations where closed_at >= ? and closed_at < ?
       ) r group by day`,
      [from, to, from, to],
    );
    return { rows: inMemoryRows(rows, (r) => [r.day], page.after) };
  },
});

interface OrderDay {
  day: string;
  status: string;
  orders: number;
  units: number;
}

export const orders = defineReport({
  name: 'orders',
  summary: 'Orders and units entering each status per day; fulfilment lead time p50/p95',
  formula:
    'From the order history: per UTC day and status entered, the orders that entered it and their ordered units. Lead time = fulfilled (the change to fulfilled) − created, for orders fulfilled in the window; p50 and p95 by linear interpolation.',
  edgeRules: ['no order fulfilled in the window: the lead times are null'],
  query: windowQuery,
  check: checkWindow,
  cursor: reportCursor('orders', z.tuple([textKey, textKey])),
  key: (r: OrderDay) => [r.day, r.status],
  columns: [
    { name: 'day', value: (r: OrderDay) => r.day, text: true },
    { name: 'status', value: (r) => r.status, text: true },
    { name: 'orders', value: (r) => r.orders },
    { name: 'units', value: (r) => r.units },
  ],
  async run(db, query, page) {
    const { from, to } = windowOf(query);
    const { rows } = await db.raw<{ rows: OrderDay[] }>(
      `select (h.at at time zone 'UTC')::date::text as day, h.to_status as status,
              count(distinct h.order_id)::int as orders,
              coalesce(sum((select sum(l.ordered) from order_lines l where l.order_id = h.order_id)), 0)::bigint as units
       from order_history h
       where h.at >= ? and h.at < ? and (h.from_status is distinct from h.to_status)
       group by 1, 2`,
      [from, to],
    );
    const { rows: lead } = await db.raw<{
      rows: { p50: number | null; p95: number | null; fulfilled: number }[];
    }>(
      `select percentile_cont(0.5) within group (order by seconds) as p50,
              percentile_cont(0.95) within group (order by seconds) as p95, count(*)::int as fulfilled
       from (select extract(epoch from h.at - o.created_at)::float8 as seconds
             from order_history h join orders o on o.id = h.order_id
             where h.at >= ? and h.at < ? and h.to_status = 'fulfilled' and h.from_status is distinct from 'fulfilled') f`,
      [from, to],
    );
    const l = lead[0]!;
    return {
      rows: inMemoryRows(rows, (r) => [r.day, r.status], page.after),
      summary: { leadTimeSeconds: { p50: l.p50, p95: l.p95, fulfilled: l.fulfilled } },
    };
  },
});

interface JobRow {
  queue: string;
  name: string;
  completed: number;
  failed: number;
  retried: number;
  failedByCode: Record<string, number>;
  runMsP50: number | null;
  runMsP95: number | null;
  waitMsP50: number | null;
  waitMsP95: number | null;
}

export const jobs = defineReport({
  name: 'jobs',
  summary: 'Per queue and job name: completed, failed by error code, retried; p50/p95 run time and wait',
  formula:
    'From job_runs, one row per finished attempt that the worker processor records: completed and failed (for good) attempts, retried attempts; run time of every attempt; wait = from due to the first attempt start.',
  edgeRules: [
    'a failure for good is counted under its domain error code, or "error" for a crash out of attempts',
    'percentiles by linear interpolation; null without attempts',
  ],
  query: windowQuery,
  check: checkWindow,
  cursor: reportCursor('jobs', z.tuple([textKey, textKey])),
  key: (r: JobRow) => [r.queue, r.name],
  columns: [
    { name: 'queue', value: (r: JobRow) => r.queue, text: true },
    { name: 'name', value: (r) => r.name, text: true },
    { name: 'completed', value: (r) => r.completed },
    { name: 'failed', value: (r) => r.failed },
    { name: 'retried', value: (r) => r.retried },
    { name: 'failed_by_code', value: (r) => JSON.stringify(r.failedByCode), text: true },
    { name: 'run_ms_p50', value: (r) => r.runMsP50 },
    { name: 'run_ms_p95', value: (r) => r.runMsP95 },
    { name: 'wait_ms_p50', value: (r) => r.waitMsP50 },
    { name: 'wait_ms_p95', value: (r) => r.waitMsP95 },
  ],
  async run(db, query, page) {
    const rows = await jobRows(db, windowOf(query));
    return { rows: inMemoryRows(rows, (r) => [r.queue, r.name], page.after) };
  },
});

interface WebhookRow {
  endpointId: string;
  url: string;
  description: string | null;
  status: string;
  deliveries: number;
  delivered: number;
  failed: number;
  successRate: number | null;
  meanAttempts: number | null;
  latencyMsP95: number | null;
  disabledSeconds: number;
}

export const webhooks = defineReport({
  name: 'webhooks',
  summary: 'Per webhook endpoint: deliveries, success rate, mean attempts, p95 latency, time disabled',
  formula:
    'Deliveries created in the window; success rate = delivered ÷ (delivered + failed); mean attempts per delivery; p95 of the duration of attempts started in the window; disabled time = the part of the window between each webhook.endpoint_disabled event and the next webhook.endpoint_enabled (or the window’s end).',
  edgeRules: [
    'no finished delivery: successRate null; no attempt: latencyMsP95 null',
    'the URL is shown without userinfo, query or fragment',
  ],
  query: windowQuery,
  check: checkWindow,
  cursor: reportCursor('webhooks', z.tuple([textKey])),
  key: (r: WebhookRow) => [r.endpointId],
  columns: [
    { name: 'endpoint_id', value: (r: WebhookRow) => r.endpointId, text: true },
    { name: 'url', value: (r) => r.url, text: true },
    { name: 'description', value: (r) => r.description, text: true },
    { name: 'status', value: (r) => r.status, text: true },
    { name: 'deliveries', value: (r) => r.deliveries },
    { name: 'delivered', value: (r) => r.delivered },
    { name: 'failed', value: (r) => r.failed },
    { name: 'success_rate', value: (r) => r.successRate },
    { name: 'mean_attempts', value: (r) => r.meanAttempts },
    { name: 'latency_ms_p95', value: (r) => r.latencyMsP95 },
    { name: 'disabled_seconds', value: (r) => r.disabledSeconds },
  ],
  async run(db, query, page) {
    const rows = await webhookRows(db, windowOf(query));
    return { rows: inMemoryRows(rows, (r) => [r.endpointId], page.after) };
  },
});

async function jobRows(db: Knex, { from, to }: Window): Promise<JobRow[]> {
  const { rows } = await db.raw<{ rows: JobRow[] }>(
    `select queue collate "C" as queue, name collate "C" as name,
              count(*) filter (where outcome = 'completed')::int as completed,
              count(*) filter (where outcome = 'failed')::int as failed,
              count(*) filter (where outcome = 'retried')::int as retried,
              coalesce((select jsonb_object_agg(code, n) from (
                 select coalesce(f.error_code, 'error') as code, count(*)::int as n from job_runs f
                 where f.finished_at >= ? and f.finished_at < ? and f.queue = r.queue and f.name = r.name
                   and f.outcome = 'failed' group by 1) c), '{}'::jsonb) as "failedByCode",
              percentile_cont(0.5) within group (order by run_ms) as "runMsP50",
              percentile_cont(0.95) within group (order by run_ms) as "runMsP95",
              percentile_cont(0.5) within group (order by wait_ms) as "waitMsP50",
              percentile_cont(0.95) within group (order by wait_ms) as "waitMsP95"
       from job_runs r where finished_at >= ? and finished_at < ?
       group by queue, name`,
    [from, to, from, to],
  );
  return rows;
}

async function webhookRows(db: Knex, { from, to }: Window): Promise<WebhookRow[]> {
  const { rows } = await db.raw<{ rows: WebhookRow[] }>(
    `select e.id::text as "endpointId", regexp_replace(split_part(split_part(e.url, '#', 1), '\\?', 1), '//[^/@]*@', '//') as url,
              e.description, e.status,
              coalesce(d.deliveries, 0)::int as deliveries, coalesce(d.delivered, 0)::int as delivered,
              coalesce(d.failed, 0)::int as failed,
              case when coalesce(d.delivered, 0) + coalesce(d.failed, 0) > 0
                   then d.delivered::float8 / (d.delivered + d.failed) end as "successRate",
              d.mean_attempts as "meanAttempts", a.p95 as "latencyMsP95",
              coalesce((select sum(extract(epoch from least(coalesce(en.at, ?::timestamptz), ?::timestamptz)
                                                       - greatest(x.at, ?::timestamptz)))
                 from (select occurred_at as at, seq from events
                       where aggregate_type = 'webhook_endpoint' and aggregate_id = e.id::text
                         and type = 'webhook.endpoint_disabled' and occurred_at < ?::timestamptz) x
                 left join lateral (select occurred_at as at from events
                       where aggregate_type = 'webhook_endpoint' and aggregate_id = e.id::text
                         and type = 'webhook.endpoint_enabled' and seq > x.seq order by seq limit 1) en on true
                 where coalesce(en.at, ?::timestamptz) > ?::timestamptz), 0)::float8 as "disabledSeconds"
       from webhook_endpoints e
       left join lateral (
         select count(*) as deliveries, count(*) filter (where status = 'delivered') as delivered,
                count(*) filter (where status = 'failed') as failed, avg(attempts)::float8 as mean_attempts
         from webhook_deliveries where endpoint_id = e.id and created_at >= ? and created_at < ?
       ) d on true
       left join lateral (
         select percentile_cont(0.95) within group (order by t.duration_ms) as p95
         from webhook_attempts t join webhook_deliveries w on w.id = t.delivery_id
         where w.endpoint_id = e.id and t.started_at >= ? and t.started_at < ?
       ) a on true`,
    [to, to, from, to, to, from, from, to, from, to],
  );
  return rows;
}

/** What the /ops page shows of the platform's own activity over a window: queues by the hour, webhooks. */
export async function activityForOps(db: Knex, window: Window) {
  const jobs = await jobRows(db, window);
  const queues = new Map<string, { queue: string; completed: number; failed: number; retried: number }>();
  for (const j of jobs) {
    const q = queues.get(j.queue) ?? { queue: j.queue, completed: 0, failed: 0, retried: 0 };
    q.completed += j.completed;
    q.failed += j.failed;
    q.retried += j.retried;
    queues.set(j.queue, q);
  }
  const { rows: hours } = await db.raw<{ rows: { hour: string; completed: number; failed: number }[] }>(
    `select to_char(date_trunc('hour', finished_at at time zone 'UTC'), 'YYYY-MM-DD"T"HH24:00"Z"') as hour,
            count(*) filter (where outcome = 'completed')::int as completed,
            count(*) filter (where outcome <> 'completed')::int as failed
     from job_runs where finished_at >= ? and finished_at < ? group by 1 order by 1`,
    [window.from, window.to],
  );
  return {
    activityWindow: { from: window.from.toISOString(), to: window.to.toISOString() },
    queues: [...queues.values()],
    jobHours: hours,
    webhooks: await webhookRows(db, window),
  };
}
