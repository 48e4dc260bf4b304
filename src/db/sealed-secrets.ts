import type { Knex } from 'knex';
import { isSealed, type SecretBox } from '../secrets.js';

/** Every column that holds a secret sealed at rest, with the key of its rows. */
const sealedColumns = [
  { table: 'webhook_endpoints', key: 'id', columns: ['secret', 'previous_secret'] },
  { table: 'suppliers', key: 'code', columns: ['api_key'] },
] as const;

export type ResealCounts = Record<(typeof sealedColumns)[number]['table'], number>;

/**
 * Seals every stored secret that is not sealed under the current key: plaintext values written
 * before secrets were sealed, and values sealed by a previous key (after a rotation of
 * SECRETS_KEY). Row by row, each in its own short transaction; safe to run again at any time.
 * A direct write: resealing changes how a value is stored, not the row's meaning, so no event.
 */
export async function resealStoredSecrets(db: Knex, box: SecretBox): Promise<ResealCounts> {
  const reseal = (value: string | null) => {
    if (value === null) return null;
    if (!isSealed(value)) return box.seal(value);
    return box.needsReseal(value) ? box.seal(box.open(value)) : value;
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
          const next = reseal(row[column] as string | null);
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
