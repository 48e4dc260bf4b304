import { z } from 'zod';

/** An event as the feed, the streams and webhooks carry it: its place in the log and its data. */
export const logEventSchema = z.object({
  seq: z.number().int(),
  id: z.string(),
  type: z.string(),
  aggregate: z.object({ type: z.string(), id: z.string() }),
  data: z.record(z.string(), z.unknown()),
  jobId: z.string().nullable(),
  actor: z.string().nullable(),
  occurredAt: z.string(),
});
export type LogEvent = z.output<typeof logEventSchema>;
