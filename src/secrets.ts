import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ConfigError } from './config.js';

/**
 * Secrets at rest (webhook signing secrets, supplier API keys): AES-256-GCM under a key from
 * config (`SECRETS_KEY`). A sealed value names the key that sealed it, so after a rotation the
 * previous keys (`SECRETS_KEY_PREVIOUS`) still open old values until they are sealed again.
 *
 * Sealed form: `sf1:<key id>:<iv>:<tag>:<ciphertext>` (base64url parts; the key id is the first
 * 8 hex digits of the key's sha-256, which says nothing about the key).
 */
export interface SecretBox {
  seal(plaintext: string): string;
  open(sealed: string): string;
  /** True when the value was sealed by a key other than the current one (it should be resealed). */
  needsReseal(sealed: string): boolean;
}

const prefix = 'sf1';
const ivBytes = 12;

/** Where a sealed value cannot be opened: wrong or unknown key, or a tampered value. */
export class SecretUnreadableError extends Error {
  constructor(reason: string) {
    super(`A stored secret cannot be opened: ${reason}`);
    this.name = 'SecretUnreadableError';
  }
}

export const keyIdOf = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 8);

/** A fresh random key, as `SECRETS_KEY` takes it (base64 of 32 bytes). */
export function generateSecretsKey(): string {
  return randomBytes(32).toString('base64');
}

/** Whether a stored value is sealed (anything else is a plaintext value from before sealing). */
export const isSealed = (value: string) => value.startsWith(`${prefix}:`);

/**
 * The secret box of a process, from config: the one place it is made. Throws when no key is
 * configured (production requires SECRETS_KEY; `npm start` generates a local one).
 */
export function secretBoxFromConfig(config: {
  SECRETS_KEY?: Buffer | undefined;
  SECRETS_KEY_PREVIOUS?: Buffer[] | undefined;
}): SecretBox {
  if (!config.SECRETS_KEY) {
    throw new ConfigError([
      'SECRETS_KEY: not set; set it (openssl rand -base64 32), or run `npm start` once to generate a local key',
    ]);
  }
  return createSecretBox({ current: config.SECRETS_KEY, previous: config.SECRETS_KEY_PREVIOUS });
}

export function createSecretBox(keys: { current: Buffer; previous?: readonly Buffer[] }): SecretBox {
  const all = [keys.current, ...(keys.previous ?? [])];
  if (all.some((key) => key.length !== 32)) throw new Error('secrets keys must be 32 bytes (AES-256)');
  const byId = new Map(all.map((key) => [keyIdOf(key), key]));
  const currentId = keyIdOf(keys.current);
  return {
    seal(plaintext) {
      const iv = randomBytes(ivBytes);
      const cipher = createCipheriv('aes-256-gcm', keys.current, iv);
      // The key id is bound as associated data: a value cannot be passed off as another key's.
      cipher.setAAD(Buffer.from(currentId));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [prefix, currentId, iv, tag, ciphertext]
        .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
        .join(':');
    },
    open(sealed) {
      const [marker, keyId, iv, tag, ciphertext] = sealed.split(':');
      if (marker !== prefix || !keyId || !iv || !tag || ciphertext === undefined) {
        throw new SecretUnreadableError('not a sealed value');
      }
      const key = byId.get(keyId);
      if (!key) throw new SecretUnreadableError(`sealed by key ${keyId}, which is not configured`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(keyId));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([
          decipher.update(Buffer.from(ciphertext, 'base64url')),
          decipher.final(),
        ]).toString('utf8');
      } catch {
        throw new SecretUnreadableError('authentication failed (tampered value or wrong key)');
      }
    },
    needsReseal(sealed) {
      return sealed.split(':')[1] !== currentId;
    },
  };
}
