import { parseConfig } from '../src/config.js';
import { openPostgres } from '../src/connections.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { describeResealed, resealStoredSecrets } from '../src/db/sealed-secrets.js';
import { runEntry } from '../src/entry.js';
import { redactUrl } from '../src/log.js';
import { secretBoxFromConfig } from '../src/secrets.js';

/**
 * `npm run migrate`: creates the database if needed, applies pending migrations (Procfile
 * `release`), then seals every stored secret under SECRETS_KEY. SQL cannot seal (it has no key),
 * so secrets written in plaintext by older releases are sealed here, in the one step that runs
 * before every deploy's new code and holds the key.
 */
runEntry(async () => {
  const config = parseConfig();
  const { created, applied } = await prepareDatabase(config);
  if (created) console.log(`created database ${redactUrl(config.DATABASE_URL)}`);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
  if (!config.SECRETS_KEY) {
    console.warn('SECRETS_KEY is not set: stored secrets were not sealed (npm start generates a local key)');
    return;
  }
  const db = await openPostgres(config);
  try {
    const resealed = await resealStoredSecrets(db, secretBoxFromConfig(config));
    if (resealed.webhook_endpoints + resealed.suppliers > 0)
      console.log(`sealed the stored secrets of ${describeResealed(resealed)}`);
  } finally {
    await db.destroy();
  }
});
