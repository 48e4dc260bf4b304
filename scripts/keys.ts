import { parseArgs } from 'node:util';
import { announceApiKeysChanged } from '../src/api/auth.js';
import { parseConfig, parseDuration } from '../src/config.js';
import { openPostgres, openRedis } from '../src/connections.js';
import { createApiKey, listApiKeys, revokeApiKey, type Scope, scopes } from '../src/db/api-keys.js';
import { runEntry } from '../src/entry.js';

const usage = `usage:
  npm run keys -- create --name <name> --scope pms|admin|ops|monitor [--scope ...] [--expires-in 90d]
  npm run keys -- list
  npm run keys -- revoke <name or id>`;

/** `npm run keys`: create (prints the key once, alone on its last line), list and revoke API keys. */
runEntry(async () => {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      scope: { type: 'string', multiple: true },
      'expires-in': { type: 'string' },
    },
  });
  const [command, target] = positionals;
  const config = parseConfig();
  const db = await openPostgres(config);
  try {
    switch (command) {
      case 'create': {
        const requested = values.scope ?? [];
        const bad = requested.filter((s) => !(scopes as readonly string[]).includes(s));
        if (!values.name || requested.length === 0 || bad.length > 0) {
          throw new UsageError(
            bad.length ? `unknown scope(s): ${bad.join(', ')}` : 'create needs --name and --scope',
          );
        }
        const lifetime = values['expires-in'];
        const lifetimeMs = lifetime === undefined ? undefined : parseDuration(lifetime);
        if (lifetime !== undefined && !lifetimeMs) {
          throw new UsageError(`--expires-in takes a duration such as 90d, 12h or 30m, not ${lifetime}`);
        }
        const { key, info } = await createApiKey(db, {
          name: values.name,
          scopes: requested as Scope[],
          expiresAt: lifetimeMs ? new Date(Date.now() + lifetimeMs) : undefined,
        });
        const expiry = info.expiresAt ? `, expiring ${info.expiresAt}` : '';
        console.log(
          `created API key ${info.name} (${info.id}) with scopes ${info.scopes.join(', ')}${expiry}`,
        );
        console.log('store it now: it is shown only this once');
        console.log(key);
        return;
      }
      case 'list': {
        const keys = await listApiKeys(db);
        if (keys.length === 0) console.log('no API keys');
        for (const k of keys) {
          const expired = k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now();
          const state = k.revokedAt
            ? `revoked ${k.revokedAt}`
            : expired
              ? `expired ${k.expiresAt}`
              : k.expiresAt
                ? `active until ${k.expiresAt}`
                : 'active';
          console.log(
            `${k.id}  ${k.name.padEnd(20)} ${k.scopes.join(',').padEnd(14)} ${k.keyPrefix}…  created ${k.createdAt}  last used ${k.lastUsedAt ?? 'never'}  ${state}`,
          );
        }
        return;
      }
      case 'revoke': {
        if (!target) throw new UsageError('revoke needs a key name or id');
        const revoked = await revokeApiKey(db, target);
        if (revoked.length === 0) throw new UsageError(`no active API key named or with id ${target}`);
        await announceRevocation(config);
        for (const k of revoked) console.log(`revoked ${k.name} (${k.id})`);
        return;
      }
      default:
        throw new UsageError(command ? `unknown command ${command}` : 'no command given');
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n${usage}`);
      process.exitCode = 2;
      return;
    }
    throw error;
  } finally {
    await db.destroy();
  }
});

class UsageError extends Error {}

/**
 * Tells running web processes to drop cached keys and close the revoked key's streams now; without
 * Redis they do within the cache TTL and the stream re-check.
 */
async function announceRevocation(config: ReturnType<typeof parseConfig>): Promise<void> {
  try {
    const redis = await openRedis(config, 'producer');
    await announceApiKeysChanged(redis, config.QUEUE_PREFIX);
    await redis.quit();
  } catch {
    console.warn(
      `could not reach Redis: running web processes forget the key within ${config.API_KEY_CACHE_SECONDS} s ` +
        `and close its event streams within ${config.EVENT_STREAM_KEY_CHECK_MS / 1000} s`,
    );
  }
}
