import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ConfigError } from './errors/config-error.js';
import { SecretUnreadableError } from './errors/secret-unreadable-error.js';

/**
 * Secrets at rest (webhook signing secrets, supplier API keys): AES-256-GCM under a key from
 * config (`SECRETS_KEY`). A sealed value names the key that sealed it, so after a rotation the
 * previous keys (`SECRETS_KEY_PREVIOUS`) still open old values until they are sealed again.
 *
 * Sealed form: `sf2:<key id>:<iv>:<tag>:<ciphertext>` (base64url parts; the key id is the first
 * 8 hex digits of the key's sha-256, which says nothing about the key; the IV is 12 bytes, the tag
 * always 16). The associated data binds the form, the key id and the place the value is stored
 * (table, column, row key): a sealed value copied to another row or column does not open.
 * `sf1` values (associated data: the key id alone) still open, and are resealed as `sf2` by
 * `npm run migrate` and `npm run secrets -- reseal`.
 */
export interface SecretBox {
  seal(plaintext: string, at: SealedAt): string;
  open(sealed: string, at: SealedAt): string;
  /** True when the value should be sealed again: by a key other than the current one, or in the `sf1` form. */
  needsReseal(sealed: string): boolean;
}

/** Every column that holds a sealed secret. */
export type SealedColumn =
  | 'webhook_endpoints.secret'
  | 'webhook_endpoints.previous_secret'
  | 'suppliers.api_key';

/** Where a sealed value is stored: its column and the key of its row (endpoint id, supplier code). */
export interface SealedAt {
  column: SealedColumn;
  row: string;
}

const form = 'sf2';
const legacyForm = 'sf1';
const ivBytes = 12;
const tagBytes = 16;

export const keyIdOf = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 8);

/** A fresh random key, as `SECRETS_KEY` takes it (base64 of 32 bytes). */
export function generateSecretsKey(): string {
  return randomBytes(32).toString('base64');
}

/** Whether a stored value is sealed (anything else is a plaintext value from before sealing). */
export const isSealed = (value: string) => value.startsWith(`${form}:`) || value.startsWith(`${legacyForm}:`);

/** The associated data of a value: `sf1` bound the key id alone; `sf2` binds its place too. */
const associatedData = (marker: string, keyId: string, at: SealedAt) =>
  Buffer.from(marker === legacyForm ? keyId : JSON.stringify([form, keyId, at.column, at.row]));

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
    seal(plaintext, at) {
      const iv = randomBytes(ivBytes);
      const cipher = createCipheriv('aes-256-gcm', keys.current, iv, { authTagLength: tagBytes });
      cipher.setAAD(associatedData(form, currentId, at));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [form, currentId, iv, tag, ciphertext]
        .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
        .join(':');
    },
    open(sealed, at) {
      const [marker, keyId, iv, tag, ciphertext, ...rest] = sealed.split(':');
      if (
        (marker !== form && marker !== legacyForm) ||
        !keyId ||
        !iv ||
        !tag ||
        ciphertext === undefined ||
        rest.length > 0
      ) {
        throw new SecretUnreadableError('not a sealed value');
      }
      const key = byId.get(keyId);
      if (!key) throw new SecretUnreadableError(`sealed by key ${keyId}, which is not configured`);
      const ivBuffer = Buffer.from(iv, 'base64url');
      const tagBuffer = Buffer.from(tag, 'base64url');
      // A short tag would be checked as short (a 4-byte tag is a 1 in 2^32 forgery): only 16 bytes.
      if (ivBuffer.length !== ivBytes || tagBuffer.length !== tagBytes) {
        throw new SecretUnreadableError('not a sealed value (IV or tag of the wrong length)');
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, ivBuffer, { authTagLength: tagBytes });
        decipher.setAAD(associatedData(marker, keyId, at));
        decipher.setAuthTag(tagBuffer);
        return Buffer.concat([
          decipher.update(Buffer.from(ciphertext, 'base64url')),
          decipher.final(),
        ]).toString('utf8');
      } catch {
        throw new SecretUnreadableError(
          'authentication failed (tampered value, wrong key, or a value copied from another row or column)',
        );
      }
    },
    needsReseal(sealed) {
      const [marker, keyId] = sealed.split(':');
      return marker !== form || keyId !== currentId;
    },
  };
}
