import type { Knex } from 'knex';
import { isSealed, type SealedColumn, type SecretBox } from '../secrets.js';

/** Every column that holds a secret sealed at rest, with the key of its rows. */
const sealedColumns = [
  { table: 'webhook_endpoints', key: 'id', columns: ['secret', 'previous_secret'] },
  { table: 'suppliers', key: 'code', columns: ['api_key'] },
] as const;

export type ResealCounts = Record<(typeof sealedColumns)[number]['table'], number>;

/**
 * Seals every stored secret that is not sealed under the current key in the current form:
 * plaintext values written before secrets were sealed, values sealed by a previous key (after a
 * rotation of SECRETS_KEY), and `sf1` values, whose associated data did not name their row (they
 * are sealed again bound to the row and column they are found in). Row by row, each in its own
 * short transaction; safe to run again at any time. A direct write: resealing changes how a value
 * is stored, not the row's meaning, so no event.
 */
export async function resealStoredSecrets(db: Knex, box: SecretBox): Promise<ResealCounts> {
  const reseal = (value: string | null, column: SealedColumn, row: string) => {
    if (value === null) return null;
    const at = { column, row };
    if (!isSealed(value)) return box.seal(value, at);
    return box.needsReseal(value) ? box.seal(box.open(value, at), at) : value;
  };
  const counts = {} as ResealCounts;
  for (const { table, key, columns } of sealedColumns) {
    counts[table] = 0;
    const keys = (await db(table).orderBy(key).pluck(key)) as string[];
    for (const id of keys) {
      await db.transaction(async (trx) => {
        const row = await trx(table)
          .where({ [key]: id })
          .forUpdate()
          .first(...columns);
        if (!row) return;
        const changed: Record<string, string | null> = {};
        for (const column of columns) {
          const next = reseal(row[column] as string | null, `${table}.${column}` as SealedColumn, id);
          if (next !== row[column]) changed[column] = next;
        }
        if (Object.keys(changed).length === 0) return;
        await trx(table)
          .where({ [key]: id })
          .update(changed);
        counts[table]++;
      });
    }
  }
  return counts;
}

/** `3 webhook endpoint(s), 1 supplier(s)`: for the CLIs' one line. */
export const describeResealed = (counts: ResealCounts) =>
  `${counts.webhook_endpoints} webhook endpoint(s), ${counts.suppliers} supplier(s)`;
