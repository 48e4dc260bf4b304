import { parseConfig } from '../config.js';
import { closeWithin, onShutdownSignal, runEntry } from '../entry.js';
import { createLogger } from '../log.js';
import { buildApp } from './app.js';
import { openApiDeps } from './deps.js';

/** Web process: the intake API, reads, job status, docs and Bull Board. */
runEntry(async () => {
  const config = parseConfig();
  const log = createLogger(config, 'stockflow-web');
  const deps = await openApiDeps(config, log);
  const app = await buildApp(deps);
  await app.listen({ host: config.HOST, port: config.PORT });

  onShutdownSignal(async (signal) => {
    log.info({ signal }, 'closing: no new connections, draining in-flight requests');
    const drained = await closeWithin(app.close(), config.SHUTDOWN_TIMEOUT_MS);
    await deps.close();
    return drained ? 0 : 1;
  });
});
