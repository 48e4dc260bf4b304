import { parseConfig } from '../src/config.js';
import { redactUrl } from '../src/connections.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { runEntry } from '../src/entry.js';

/** `npm run migrate`: creates the database if needed and applies pending migrations (Procfile `release`). */
runEntry(async () => {
  const config = parseConfig();
  const { created, applied } = await prepareDatabase(config);
  if (created) console.log(`created database ${redactUrl(config.DATABASE_URL)}`);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
});
