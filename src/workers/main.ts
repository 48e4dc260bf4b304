import { parseArgs } from 'node:util';
import { parseConfig } from '../config.js';
import { openPostgres, openRedis, warnAboutRedisSettings } from '../connections.js';
import { onShutdownSignal, runEntry } from '../entry.js';
import { createLogger } from '../log.js';
import { closeQueues, createQueues } from '../queues/queues.js';
import { secretBoxFromConfig } from '../secrets.js';
import { parseQueueList, startWorkers, stopWorkers } from './pool.js';

/** Worker process: `node dist/src/workers/main.js [--queues products,inventory]` (default: all queues). */
runEntry(async () => {
  const { values } = parseArgs({ options: { queues: { type: 'string' } } });
  const config = parseConfig();
  const log = createLogger(config, 'stockflow-worker');
  const queueList = parseQueueList(values.queues);
  const db = await openPostgres(config, 'worker');
  const redis = await openRedis(config, 'worker');
  await warnAboutRedisSettings(redis, log);
  const queues = createQueues(redis, config);
  const workers = await startWorkers(
    { config, log, db, redis, queues, secrets: secretBoxFromConfig(config) },
    queueList,
  );

  onShutdownSignal(async (signal) => {
    log.info({ signal }, 'stopping workers: no new jobs, waiting for active ones');
    const graceful = await stopWorkers(workers, config.SHUTDOWN_TIMEOUT_MS);
    await closeQueues(queues);
    await redis.quit();
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
