import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config.js';
import { openPostgres } from '../src/connections.js';
import { describeResealed, resealStoredSecrets } from '../src/db/sealed-secrets.js';
import { runEntry } from '../src/entry.js';
import { keyIdOf, secretBoxFromConfig } from '../src/secrets.js';

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
    const resealed = await resealStoredSecrets(db, box);
    console.log(
      `resealed ${describeResealed(resealed)} under key ${keyIdOf(config.SECRETS_KEY!)}; ` +
        'values sealed by a previous key no longer need SECRETS_KEY_PREVIOUS',
    );
  } finally {
    await db.destroy();
  }
});
