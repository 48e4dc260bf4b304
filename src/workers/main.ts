import { parseArgs } from 'node:util';
import { openReadCache } from '../cache/read-cache.js';
import { parseConfig } from '../config.js';
import { checkPostgresRoom, checkRedisDurability, openPostgres, openRedis } from '../connections.js';
import { closeWithin, onShutdownSignal, runEntry } from '../entry.js';
import { createLogger } from '../log.js';
import { collectCache, collectPool, collectRedisSettings, createMetrics } from '../ops/metrics.js';
import { closeQueues, createQueues } from '../queues/queues.js';
import { secretBoxFromConfig } from '../secrets.js';
import { serveWorkerMetrics } from './metrics-server.js';
import { parseQueueList, startWorkers, stopWorkers } from './queue-workers.js';

/** Worker process: `node dist/src/workers/main.js [--queues products,inventory]` (default: all queues). */
runEntry(async () => {
  const { values } = parseArgs({ options: { queues: { type: 'string' } } });
  const config = parseConfig();
  const log = createLogger(config, 'stockflow-worker');
  const queueList = parseQueueList(values.queues);
  const db = await openPostgres(config, 'worker');
  const redis = await openRedis(config, 'worker');
  await checkPostgresRoom(db, config, log);
  await checkRedisDurability(redis, config, log);
  const queues = createQueues(redis, config);
  const cache = await openReadCache({ config, log, db, redis });
  const metrics = createMetrics();
  collectPool(metrics, db);
  collectCache(metrics, cache);
  collectRedisSettings(metrics, redis);
  const metricsServer =
    config.METRICS_PORT === undefined
      ? undefined
      : await serveWorkerMetrics(metrics, config.HOST, config.METRICS_PORT);
  if (metricsServer) log.info({ url: metricsServer.url }, 'worker metrics listening');
  const workers = await startWorkers(
    {
      config,
      log,
      db,
      redis,
      queues,
      cache,
      metrics,
      secrets: secretBoxFromConfig(config),
    },
    queueList,
  );

  onShutdownSignal(async (signal) => {
    log.info({ signal }, 'stopping workers: no new jobs, waiting for active ones');
    const graceful = await stopWorkers(workers, config.SHUTDOWN_TIMEOUT_MS);
    metricsServer?.server.close();
    // Bounded: on a wedged cluster connection a quit can wait forever (src/workers/watchdog.ts).
    const closing = (async () => {
      await cache.close();
      await closeQueues(queues);
      await redis.quit();
    })();
    if (!(await closeWithin(closing, config.SHUTDOWN_TIMEOUT_MS))) redis.disconnect();
    await db.destroy();
    if (graceful) log.info('workers stopped');
    else
      log.warn(
        { timeoutMs: config.SHUTDOWN_TIMEOUT_MS },
        'active jobs outlived the shutdown timeout; they will be retried',
      );
    return graceful ? 0 : 1;
  });
});
