import type { Knex } from 'knex';
import type { KeyPart, ReportDefinition, Summary } from './report.js';

/** What an answer reflects: the instant its snapshot was taken and the newest ledger row it sees. */
export interface AsOf {
  at: string;
  movementId: number;
}

/**
 * A report reads rollups and pending rows in one snapshot (repeatable read), so a movement is
 * counted once; its aggregates get more memory than a request's default so they do not spill.
 */
export async function openReportSnapshot(db: Knex): Promise<{ trx: Knex.Transaction; asOf: AsOf }> {
  const trx = await db.transaction({ isolationLevel: 'repeatable read', readOnly: true });
  try {
    await trx.raw(`set local work_mem = '32MB'`);
    const { rows } = await trx.raw<{ rows: { at: Date; movement_id: number | null }[] }>(
      `select now() as at, (select max(id) from stock_movements) as movement_id`,
    );
    return { trx, asOf: { at: rows[0]!.at.toISOString(), movementId: rows[0]!.movement_id ?? 0 } };
  } catch (error) {
    await trx.rollback().catch(() => undefined);
    throw error;
  }
}

/** One JSON page: `{ report, asOf, …summary, items, nextCursor }`. */
export async function reportPage(
  db: Knex,
  report: ReportDefinition,
  query: Record<string, unknown>,
  page: { after?: KeyPart[]; limit: number },
): Promise<{ report: string; asOf: AsOf; items: unknown[]; nextCursor: string | null } & Summary> {
  const { trx, asOf } = await openReportSnapshot(db);
  try {
    const { rows, summary } = await report.run(trx, query, { after: page.after, limit: page.limit + 1 });
    const items: unknown[] = [];
    for await (const batch of rows) {
      items.push(...batch);
      if (items.length > page.limit) break;
    }
    await trx.commit();
    const shown = items.slice(0, page.limit);
    const last = shown[shown.length - 1];
    return {
      report: report.name,
      asOf,
      ...summary,
      items: shown,
      nextCursor: items.length > page.limit && last ? report.cursor.encode(report.key(last as never)) : null,
    };
  } catch (error) {
    await trx.rollback().catch(() => undefined);
    throw error;
  }
}

/**
 * Every row from `after` on, in batches, for an export: the snapshot stays open while the rows are
 * read and ends with `finish` (commit, or rollback with an error), which the caller calls once the
 * export ended or its client went away; a second call does nothing.
 */
export async function reportExport(
  db: Knex,
  report: ReportDefinition,
  query: Record<string, unknown>,
  after: KeyPart[] | undefined,
): Promise<{
  asOf: AsOf;
  rows: AsyncIterable<Record<string, unknown>[]>;
  finish(error?: Error): Promise<void>;
}> {
  const { trx, asOf } = await openReportSnapshot(db);
  let finished = false;
  const finish = async (error?: Error) => {
    if (finished) return;
    finished = true;
    await (error ? trx.rollback() : trx.commit()).catch(() => undefined);
  };
  try {
    const { rows } = await report.run(trx, query, { after });
    return { asOf, rows, finish };
  } catch (error) {
    await finish(error as Error);
    throw error;
  }
}
