import { parseArgs } from 'node:util';
import { createStamps } from '../src/cache/stamps.js';
import { parseConfig } from '../src/config.js';
import { openPostgres, openRedis } from '../src/connections.js';
import { describeDrift, findDrift, fixDrift } from '../src/domain/reconcile.js';
import { runEntry } from '../src/entry.js';
import { redisKeys } from '../src/redis-keys.js';

/**
 * `npm run reconcile [-- --fix]`: recomputes every inventory level from the stock ledger (and
 * reserved from the active reservations) and prints each level that drifted. Exits 1 while drift
 * remains. With --fix, each drifted level is repaired in its own transaction through `count`
 * (and reserved-correction) movements whose note records what was found.
 */
runEntry(async () => {
  const { values } = parseArgs({ options: { fix: { type: 'boolean', default: false } } });
  const config = parseConfig();
  const db = await openPostgres(config);
  try {
    const drift = await findDrift(db);
    const levels = Number((await db.raw('select count(*) as n from inventory_levels')).rows[0].n);
    if (drift.length === 0) {
      console.log(`ledger = levels: no drift in ${levels} level(s)`);
      return;
    }
    for (const d of drift) console.log(`drift: ${describeDrift(d)}`);
    if (!values.fix) {
      console.log(`${drift.length} of ${levels} level(s) drifted; run with --fix to repair them`);
      process.exitCode = 1;
      return;
    }
    for (const d of drift) {
      try {
        const fixed = await db.transaction((trx) => fixDrift(trx, d));
        console.log(fixed ? `fixed: ${d.sku} @ ${d.location}` : `no longer drifts: ${d.sku} @ ${d.location}`);
      } catch (error) {
        console.error(`could not fix ${d.sku} @ ${d.location}: ${(error as Error).message}`);
      }
    }
    await forgetCachedStock(config, [...new Set(drift.map((d) => d.sku))]);
    const left = await findDrift(db);
    for (const d of left) console.log(`still drifting: ${describeDrift(d)}`);
    console.log(left.length === 0 ? 'ledger = levels after the fix' : `${left.length} level(s) still drift`);
    process.exitCode = left.length === 0 ? 0 : 1;
  } finally {
    await db.destroy();
  }
});

/** The fixed levels changed outside any job: retire their cached stock entries on every process. */
async function forgetCachedStock(config: ReturnType<typeof parseConfig>, skus: string[]): Promise<void> {
  if (!config.CACHE_ENABLED || skus.length === 0) return;
  try {
    const redis = await openRedis(config, 'producer');
    try {
      await createStamps(redis, redisKeys(config).cache).bump(skus.map((sku) => `stock:${sku}`));
    } finally {
      redis.disconnect();
    }
  } catch (error) {
    console.error(
      `could not invalidate the cached stock of the fixed skus (${(error as Error).message}); reads may show the old figures for up to CACHE_TTL`,
    );
  }
}
