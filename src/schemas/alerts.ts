import { z } from 'zod';

/** The rules the platform raises alerts by (src/ops/alerts.ts evaluates them). */
export const alertRules = [
  'queue_backlog',
  'queue_oldest_waiting',
  'job_failures',
  'route_latency',
  'webhook_endpoint_disabled',
  'stock_below_safety',
] as const;
export type AlertRule = (typeof alertRules)[number];

/** An alert as `alert.opened` / `alert.resolved` carry it (`alertAnswerSchema` below narrows its rule). */
export const alertSchema = z.looseObject({
  id: z.string(),
  rule: z.string(),
  subject: z.string(),
  labels: z.record(z.string(), z.string()),
  state: z.enum(['open', 'resolved']),
  value: z.number(),
  threshold: z.number(),
  details: z.record(z.string(), z.unknown()),
  openedAt: z.string(),
  resolvedAt: z.string().nullable(),
});

/** An alert as the evaluation returns it and `GET /api/ops/alerts` lists it: its rule one of `alertRules`. */
export const alertAnswerSchema = z.object({ ...alertSchema.shape, rule: z.enum(alertRules) });
export type Alert = z.output<typeof alertAnswerSchema>;
