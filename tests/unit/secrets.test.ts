import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { SecretUnreadableError } from '../../src/errors/secret-unreadable-error.js';
import { createSecretBox, generateSecretsKey, type SealedAt } from '../../src/secrets.js';
import { sealedTheOldWay } from '../helpers/legacy-secrets.js';

const supplier = (code: string): SealedAt => ({ column: 'suppliers.api_key', row: code });

describe('secrets at rest (AES-256-GCM)', () => {
  const oldKey = randomBytes(32);
  const newKey = randomBytes(32);

  it('seals to a value that carries no trace of the secret and opens it again', () => {
    const box = createSecretBox({ current: newKey });
    const secret = 'whsec_c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw';
    const at: SealedAt = { column: 'webhook_endpoints.secret', row: '7f1c0e8a-7b59-4c3e-9a52-0f6d6a1f0a11' };
    const sealed = box.seal(secret, at);
    const again = box.seal(secret, at);
    expect(sealed).toMatch(/^sf2:/);
    expect(sealed).not.toContain(secret);
    expect(sealed).not.toContain(Buffer.from(secret).toString('base64url').slice(0, 12));
    expect(again).not.toBe(sealed); // a fresh IV each time
    expect(box.open(sealed, at)).toBe(secret);
    expect(box.open(again, at)).toBe(secret);
  });

  it('refuses a tampered value and a value sealed by an unknown key', () => {
    const box = createSecretBox({ current: newKey });
    const sealed = box.seal('supplier-api-key', supplier('ACME'));
    const parts = sealed.split(':');
    const flipped = Buffer.from(parts[4]!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    parts[4] = flipped.toString('base64url');
    expect(() => box.open(parts.join(':'), supplier('ACME'))).toThrow(SecretUnreadableError);
    expect(() => box.open('plain-text-secret', supplier('ACME'))).toThrow(/not a sealed value/);
    const stranger = createSecretBox({ current: oldKey });
    expect(() => box.open(stranger.seal('x', supplier('ACME')), supplier('ACME'))).toThrow(/not configured/);
  });

  it('takes only a 16-byte tag: a value whose tag was cut short does not open', () => {
    const box = createSecretBox({ current: newKey });
    for (const form of [box.seal('supplier-api-key', supplier('ACME')), sealedTheOldWay(newKey, 'k')]) {
      const parts = form.split(':');
      // The first 4 bytes of the real tag: GCM would check a truncated tag as valid if it were allowed.
      parts[3] = Buffer.from(parts[3]!, 'base64url').subarray(0, 4).toString('base64url');
      expect(() => box.open(parts.join(':'), supplier('ACME'))).toThrow(/wrong length/);
    }
  });

  it('binds the table, column and row: a value copied to another place does not open', () => {
    const box = createSecretBox({ current: newKey });
    const sealed = box.seal('supplier-api-key', supplier('ACME'));
    expect(() => box.open(sealed, supplier('OTHER'))).toThrow(/copied from another row or column/);
    expect(() => box.open(sealed, { column: 'webhook_endpoints.secret', row: 'ACME' })).toThrow(
      SecretUnreadableError,
    );
    const endpoint = '7f1c0e8a-7b59-4c3e-9a52-0f6d6a1f0a11';
    const current = box.seal('whsec_x', { column: 'webhook_endpoints.secret', row: endpoint });
    expect(() => box.open(current, { column: 'webhook_endpoints.previous_secret', row: endpoint })).toThrow(
      SecretUnreadableError,
    );
  });

  it('opens sf1 values (sealed before values named their place) and says they need resealing', () => {
    const box = createSecretBox({ current: newKey });
    const legacy = sealedTheOldWay(newKey, 'old secret');
    expect(box.open(legacy, supplier('ACME'))).toBe('old secret');
    expect(box.needsReseal(legacy)).toBe(true);
    expect(box.needsReseal(box.seal('new', supplier('ACME')))).toBe(false);
  });

  it('opens values of a previous key after a rotation and says they need resealing', () => {
    const before = createSecretBox({ current: oldKey });
    const sealedBefore = before.seal('old secret', supplier('ACME'));
    const after = createSecretBox({ current: newKey, previous: [oldKey] });
    expect(after.open(sealedBefore, supplier('ACME'))).toBe('old secret');
    expect(after.needsReseal(sealedBefore)).toBe(true);
    expect(after.needsReseal(after.seal('new', supplier('ACME')))).toBe(false);
  });

  it('takes its keys from config and requires one in production', () => {
    const key = generateSecretsKey();
    const config = parseConfig({ SECRETS_KEY: key, SECRETS_KEY_PREVIOUS: generateSecretsKey() });
    expect(config.SECRETS_KEY?.length).toBe(32);
    expect(config.SECRETS_KEY_PREVIOUS).toHaveLength(1);
    expect(() => parseConfig({ SECRETS_KEY: 'c2hvcnQ=' })).toThrow(/SECRETS_KEY: must be 32 bytes/);
    expect(() => parseConfig({ NODE_ENV: 'production' })).toThrow(/SECRETS_KEY: must be set in production/);
  });
});
