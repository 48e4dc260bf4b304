import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { createSecretBox, generateSecretsKey, SecretUnreadableError } from '../../src/secrets.js';

describe('secrets at rest (AES-256-GCM)', () => {
  const oldKey = randomBytes(32);
  const newKey = randomBytes(32);

  it('seals to a value that carries no trace of the secret and opens it again', () => {
    const box = createSecretBox({ current: newKey });
    const secret = 'whsec_c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw';
    const sealed = box.seal(secret);
    const again = box.seal(secret);
    expect(sealed).not.toContain(secret);
    expect(sealed).not.toContain(Buffer.from(secret).toString('base64url').slice(0, 12));
    expect(again).not.toBe(sealed); // a fresh IV each time
    expect(box.open(sealed)).toBe(secret);
    expect(box.open(again)).toBe(secret);
  });

  it('refuses a tampered value and a value sealed by an unknown key', () => {
    const box = createSecretBox({ current: newKey });
    const sealed = box.seal('supplier-api-key');
    const parts = sealed.split(':');
    const flipped = Buffer.from(parts[4]!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    parts[4] = flipped.toString('base64url');
    expect(() => box.open(parts.join(':'))).toThrow(SecretUnreadableError);
    expect(() => box.open('plain-text-secret')).toThrow(/not a sealed value/);
    const stranger = createSecretBox({ current: oldKey });
    expect(() => box.open(stranger.seal('x'))).toThrow(/not configured/);
  });

  it('opens values of a previous key after a rotation and says they need resealing', () => {
    const before = createSecretBox({ current: oldKey });
    const sealedBefore = before.seal('old secret');
    const after = createSecretBox({ current: newKey, previous: [oldKey] });
    expect(after.open(sealedBefore)).toBe('old secret');
    expect(after.needsReseal(sealedBefore)).toBe(true);
    expect(after.needsReseal(after.seal('new'))).toBe(false);
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
