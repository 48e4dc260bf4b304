import dns from 'node:dns/promises';
import os from 'node:os';
import { isPublicAddress, refuseUrl } from '../../src/outbound/address-guard.js';

/**
 * A name (not localhost) that resolves to a non-public address the registration check lets
 * through: this machine's own name, usually. Undefined where the machine has none; a test that
 * needs it skips, saying so.
 */
export async function privateHostName(): Promise<{ name: string; address: string } | undefined> {
  const name = os.hostname();
  const address = await dns
    .lookup(name)
    .then((a) => a.address)
    .catch(() => undefined);
  if (!address || isPublicAddress(address) || refuseUrl(`http://${name}/`, false)) return undefined;
  return { name, address };
}

export const noPrivateHostName = `${os.hostname()} does not resolve to a non-public address the registration check lets through`;
