import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { horizonFor } from '../events/horizon.js';
import { readAtCursor } from '../events/outbox-cursor.js';
import type { FollowUp } from '../queues/follow-ups.js';
import type { ScanResult } from '../queues/reorder.js';
import { levelKey } from './levels.js';
import { loadRuleStates } from './reorder-rules.js';

/** Queues follow-up jobs (the worker's `addFollowUps`): the domain decides them, it cannot queue. */
type QueueFollowUps = (followUps: FollowUp[]) => Promise<unknown>;

/**
 * The planner's trigger: reads `stock.moved` events through its cursor (`reorder` in
 * `outbox_cursors`, src/events/outbox-cursor.ts) and queues a `reorder.check` for every rule of a
 * level that moved whose available + incoming is at or below its point, in the transaction that
 * moves the cursor. The check's id is (rule, cursor position): a burst of movements read in one
 * scan gives one check per rule, and a scan repeated after a lost commit adds the same jobs again,
 * which BullMQ keeps once.
 */
export async function scanMovements(
  db: Knex,
  limit: number,
  queue: QueueFollowUps,
): Promise<Omit<ScanResult, 'resentDrafts'>> {
  const horizon = await horizonFor(db).refresh(1000);
  const scan = await readAtCursor(
    db,
    { name: 'reorder', horizon, limit, types: ['stock.moved'], withData: true },
    async (trx, events, position) => {
      const moved = events.map((e) => ({ sku: String(e.data!.sku), location: String(e.data!.location) }));
      const levels = [...new Map(moved.map((level) => [levelKey(level), level])).values()];
      const due = levels.length > 0 ? (await loadRuleStates(trx, { levels })).filter((s) => s.due) : [];
      await queue(
        due.map((s) => ({ kind: 'check', payload: { ruleId: s.rule.id }, key: `scan-${position}` })),
      );
      return { levels: levels.length, checks: due.length };
    },
  );
  return scan ? { events: scan.events, ...scan.result } : { events: 0, levels: 0, checks: 0 };
}

/**
 * A draft's send job is queued after the draft commits; if Redis loses it (a restart without
 * persistence), nothing else would ever send the draft. Drafts still unsent well past their send
 * delay get their send queued again. The send job id is one per order, so a send that is still
 * queued, delayed or backing off is kept as it is, and an order is never sent twice.
 */
export async function resendStrandedDrafts(
  db: Knex,
  settings: Pick<Config, 'REORDER_SEND_DELAY_MS' | 'REORDER_DRAFT_RESEND_AFTER_MS'>,
  queue: QueueFollowUps,
): Promise<number> {
  const { REORDER_SEND_DELAY_MS: delayMs, REORDER_DRAFT_RESEND_AFTER_MS: graceMs } = settings;
  const stranded: string[] = await db('purchase_orders')
    .where({ status: 'draft' })
    .where('created_at', '<', new Date(Date.now() - delayMs - graceMs))
    .orderBy('created_at')
    .limit(1000)
    .pluck('id');
  await queue(stranded.map((id) => ({ kind: 'send', payload: { purchaseOrderId: id } })));
  return stranded.length;
}
