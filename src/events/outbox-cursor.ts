import type { Knex } from 'knex';

/** An event as a cursor's reader gets it. */
export interface CursorEvent {
  seq: number;
  id: string;
  type: string;
  aggregate_type: string;
  aggregate_id: string;
  /** Only when the reader asks for it (`withData`). */
  data?: Record<string, unknown>;
}

/**
 * One step of a reader of the event log that keeps its position in `outbox_cursors` (the webhook
 * relay, the reorder planner), in one transaction: lock the cursor, read up to `limit` events after
 * it and at or below the stable `horizon` (src/events/horizon.ts: so no event is ever skipped),
 * let `handle` act on them in the same transaction, and move the cursor to the last event read
 * when the batch was full, else to the horizon. Several processes may run the same reader: a
 * cursor another run holds is skipped (`undefined`), as is one that has nothing left to read.
 */
export async function readAtCursor<R>(
  db: Knex,
  cursor: { name: string; horizon: number; limit: number; types?: string[]; withData?: boolean },
  handle: (trx: Knex.Transaction, events: CursorEvent[], position: number) => Promise<R>,
): Promise<{ events: number; more: boolean; result: R } | undefined> {
  return db.transaction(async (trx) => {
    const row = await trx('outbox_cursors')
      .where({ name: cursor.name })
      .forUpdate()
      .skipLocked()
      .first('position');
    if (!row || row.position >= cursor.horizon) return undefined;
    const query = trx('events')
      .select('seq', 'id', 'type', 'aggregate_type', 'aggregate_id', ...(cursor.withData ? ['data'] : []))
      .where('seq', '>', row.position)
      .andWhere('seq', '<=', cursor.horizon)
      .orderBy('seq')
      .limit(cursor.limit);
    if (cursor.types) query.whereIn('type', cursor.types);
    const events = (await query) as CursorEvent[];
    const full = events.length === cursor.limit;
    const position = full ? events[events.length - 1]!.seq : cursor.horizon;
    const result = await handle(trx, events, position);
    await trx('outbox_cursors').where({ name: cursor.name }).update({ position, updated_at: trx.fn.now() });
    return { events: events.length, more: full, result };
  });
}
