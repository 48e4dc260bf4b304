import { buildApp } from '../src/api/app.js';
import { openApiDeps } from '../src/api/deps.js';
import { parseConfig } from '../src/config.js';
import { openPostgres, openRedis } from '../src/connections.js';
import { countActiveApiKeys, createApiKey } from '../src/db/api-keys.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { closeWithin, onShutdownSignal, runEntry } from '../src/entry.js';
import { createLogger } from '../src/log.js';
import { parseQueueList, startWorkers, stopWorkers } from '../src/workers/pool.js';

/**
 * `npm start`, the local default: migrate (creating the database if needed), make sure an API key
 * exists, then run the web API and every worker in this one process.
 */
runEntry(async () => {
  const config = parseConfig();
  const log = createLogger(config);
  const { created, applied } = await prepareDatabase(config);
  if (created || applied.length) log.info({ created, applied }, 'database migrated');

  const api = await openApiDeps(config, log);
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
    { config, log, db: workerDb, redis: workerRedis, queues: api.queues },
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
