import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config.js';
import { openPostgres } from '../src/connections.js';
import { runEntry } from '../src/entry.js';
import { keyIdOf, secretBoxFromConfig } from '../src/secrets.js';
import { resealEndpointSecrets } from '../src/webhooks/endpoints.js';

const usage = `usage:
  npm run secrets -- reseal    seal every stored secret under the current SECRETS_KEY
                               (after a rotation: the old key in SECRETS_KEY_PREVIOUS)`;

/** `npm run secrets`: maintenance of secrets at rest (src/secrets.ts). */
runEntry(async () => {
  const { positionals } = parseArgs({ allowPositionals: true });
  if (positionals[0] !== 'reseal' || positionals.length > 1) {
    console.error(usage);
    process.exitCode = 2;
    return;
  }
  const config = parseConfig();
  const box = secretBoxFromConfig(config);
  const db = await openPostgres(config);
  try {
    const { resealed } = await resealEndpointSecrets(db, box);
    console.log(
      `resealed ${resealed} webhook endpoint(s) under key ${keyIdOf(config.SECRETS_KEY!)}; ` +
        'values sealed by a previous key no longer need SECRETS_KEY_PREVIOUS',
    );
  } finally {
    await db.destroy();
  }
});
