import type { Knex } from 'knex';
import { ReplayRangeError } from '../errors/replay-range-error.js';
import { matchesType } from '../schemas/type-patterns.js';
import { prunedThroughSeq, readEventPage } from './event-log.js';
import { inventoryLevelsProjection } from './inventory-projection.js';
import { productsProjection } from './product-projection.js';
import type { Projection, ProjectionDifference, ReplayScope } from './projections.js';

export interface ReplayReport {
  /** The scratch schema; it exists afterwards only with `keep`. */
  schema: string;
  from: number;
  /** Last seq replayed. */
  through: number;
  events: number;
  complete: boolean;
  projections: { name: string; events: number; skipped: number; differences: ProjectionDifference[] }[];
}

/** Every projection the replay rebuilds (src/events/projections.ts says what one is). */
const projections: Projection[] = [productsProjection, inventoryLevelsProjection];

const pageSize = 1000;

/**
 * Rebuilds every registered projection from the events with seq >= `from` into a scratch schema
 * and compares it with the live tables. It runs in one REPEATABLE READ transaction, so the events
 * and the live rows it compares are one consistent snapshot, whatever workers commit meanwhile.
 * The scratch schema is rolled back afterwards unless `keep` is set (then it stays to inspect).
 */
export async function replayProjections(
  db: Knex,
  options: { from: number; keep?: boolean },
): Promise<ReplayReport> {
  const schema = `replay_${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}_${process.pid}`;
  const pruned = await prunedThroughSeq(db);
  if (options.from <= pruned) throw new ReplayRangeError(pruned + 1);
  const scope: ReplayScope = { from: options.from, complete: options.from <= 1 && pruned === 0 };
  let report: ReplayReport | undefined;
  const work = db.transaction(
    async (trx) => {
      await trx.raw('create schema ??', [schema]);
      for (const projection of projections) await projection.prepare(trx, schema, scope);
      const counts = new Map(projections.map((p) => [p.name, { events: 0, skipped: 0 }]));
      // Everything this snapshot sees is final for it: no horizon needed inside the transaction.
      const { rows } = await trx.raw<{ rows: { max: number | null }[] }>(
        'select max(seq) as max from events',
      );
      const through = rows[0]?.max ?? 0;
      let after = options.from - 1;
      let total = 0;
      for (;;) {
        const page = await readEventPage(trx, { after, limit: pageSize, horizon: through });
        if (page.items.length === 0) break;
        total += page.items.length;
        for (const projection of projections) {
          const mine = page.items.filter((e) => matchesType(projection.eventTypes, e.type));
          if (mine.length === 0) continue;
          const { skipped } = await projection.apply(trx, schema, mine);
          const count = counts.get(projection.name)!;
          count.events += mine.length;
          count.skipped += skipped;
        }
        after = page.nextAfter;
      }
      const results = [];
      for (const projection of projections) {
        results.push({
          name: projection.name,
          ...counts.get(projection.name)!,
          differences: await projection.diff(trx, schema, scope),
        });
      }
      report = {
        schema,
        from: options.from,
        through,
        events: total,
        complete: scope.complete,
        projections: results,
      };
      if (!options.keep) throw rollback;
    },
    { isolationLevel: 'repeatable read' },
  );
  await work.catch((error: unknown) => {
    if (error !== rollback) throw error;
  });
  return report!;
}

const rollback = new Error('replay finished: scratch schema rolled back');
