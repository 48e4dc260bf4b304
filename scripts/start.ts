import { writeFileSync } from 'node:fs';
import { buildApp } from '../src/api/app.js';
import { openApiDeps, sharedWorkerDeps } from '../src/api/deps.js';
import { type Config, parseConfig } from '../src/config.js';
import { openPostgres, openRedis } from '../src/connections.js';
import { countActiveApiKeys, createApiKey } from '../src/db/api-keys.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { resealStoredSecrets } from '../src/db/sealed-secrets.js';
import { closeWithin, onShutdownSignal, runEntry } from '../src/entry.js';
import { createLogger } from '../src/log.js';
import { generateSecretsKey } from '../src/secrets.js';
import { parseQueueList, startWorkers, stopWorkers } from '../src/workers/queue-workers.js';

/**
 * `npm start`, the local default: migrate (creating the database if needed), make sure an API key
 * exists, then run the web API and every worker in this one process.
 */
runEntry(async () => {
  const config = ensureLocalSecretsKey(parseConfig());
  const log = createLogger(config);
  const { created, applied } = await prepareDatabase(config);
  if (created || applied.length) log.info({ created, applied }, 'database migrated');

  const api = await openApiDeps(config, log);
  const resealed = await resealStoredSecrets(api.db, api.secrets);
  if (resealed.webhook_endpoints + resealed.suppliers > 0)
    log.info({ resealed }, 'sealed stored secrets under SECRETS_KEY');
  if ((await countActiveApiKeys(api.db)) === 0) {
    const { key } = await createApiKey(api.db, { name: 'local-admin', scopes: ['admin'] });
    console.log(
      '\nNo API key existed, so one was created (name local-admin, scope admin). It is shown only this once:\n\n' +
        `  ${key}\n\n` +
        `Try: curl -H "Authorization: Bearer ${key}" http://localhost:${config.PORT}/api/pms/products\n`,
    );
  }
  const app = await buildApp(api);
  await app.listen({ host: config.HOST, port: config.PORT });

  // The workers get a pool of their own: their Postgres guards differ from the API's.
  const workerDb = await openPostgres(config, 'worker');
  const workerRedis = await openRedis(config, 'worker');
  const workers = await startWorkers(
    sharedWorkerDeps(api, { redis: workerRedis, db: workerDb }),
    parseQueueList('all'),
  );
  log.info(
    { url: `http://localhost:${config.PORT}`, docs: '/docs', queues: '/admin/queues' },
    'Stockflow is running: API, docs and Bull Board on this port, every worker in this process',
  );

  onShutdownSignal(async (signal) => {
    log.info({ signal }, 'shutting down');
    const [drained, graceful] = await Promise.all([
      closeWithin(app.close(), config.SHUTDOWN_TIMEOUT_MS),
      stopWorkers(workers, config.SHUTDOWN_TIMEOUT_MS),
    ]);
    await workerRedis.quit();
    await workerDb.destroy();
    await api.close();
    return drained && graceful ? 0 : 1;
  });
});

/**
 * Outside production, with no SECRETS_KEY set and none generated yet: writes a fresh key to
 * SECRETS_KEY_FILE (mode 0600, git-ignored), where config finds it from then on.
 */
function ensureLocalSecretsKey(config: Config): Config {
  if (config.SECRETS_KEY || config.NODE_ENV === 'production') return config;
  try {
    // `wx`: never overwrite a key another process just wrote (the values it sealed need it).
    writeFileSync(config.SECRETS_KEY_FILE, `${generateSecretsKey()}\n`, { mode: 0o600, flag: 'wx' });
    console.log(
      `No SECRETS_KEY was set, so a local one was generated into ${config.SECRETS_KEY_FILE} (keep it)`,
    );
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return parseConfig();
}
