import { createCipheriv, randomBytes } from 'node:crypto';
import { keyIdOf } from '../../src/secrets.js';

/**
 * A value as releases before issue 16 sealed it (`sf1`): AES-256-GCM with the key id alone as
 * associated data, so it named no row. Written here by hand, not by src/secrets.ts, so tests of
 * the reseal path start from what an older release really stored.
 */
export function sealedTheOldWay(key: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(keyIdOf(key)));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['sf1', keyIdOf(key), iv, cipher.getAuthTag(), ciphertext]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join(':');
}
