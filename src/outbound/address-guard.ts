import dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The SSRF guard of outbound webhooks. A webhook URL names a host the caller chose; without a
 * guard it could make our workers call loopback services, the private network or a cloud
 * metadata endpoint. The check runs where the connection is made (a custom DNS lookup, and IP
 * literals before connecting), so a name that resolves differently later is still caught.
 */

const blocked = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (includes AWS metadata fd00:ec2::254)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

/** IPv4 carried in an IPv6 address (`::ffff:127.0.0.1`, NAT64 `64:ff9b::7f00:1`), else undefined. */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|::ffff:0:|64:ff9b::|::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const high = Number.parseInt(hex[1]!, 16);
    const low = Number.parseInt(hex[2]!, 16);
    return [high >> 8, high & 255, low >> 8, low & 255].join('.');
  }
  return undefined;
}

/** True for loopback, private, link-local, metadata, multicast and reserved addresses. */
export function isNonPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) {
    const v4 = embeddedIpv4(address);
    if (v4) return blocked.check(v4, 'ipv4');
    return blocked.check(address, 'ipv6');
  }
  return true;
}

/** Refused by the SSRF guard; the attempt is recorded with this message and no connection is made. */
export class TargetRefusedError extends Error {
  readonly code = 'ERR_WEBHOOK_TARGET_REFUSED';
  constructor(host: string, address: string) {
    super(
      `refused ${host}${address !== host ? ` (${address})` : ''}: loopback, private, link-local and metadata ` +
        'addresses are not allowed (WEBHOOK_ALLOW_PRIVATE_TARGETS)',
    );
    this.name = 'TargetRefusedError';
  }
}

/** Host of a URL without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * A DNS lookup for `http.request` that refuses non-public addresses. Node calls it when it opens
 * a connection to a host name; every address the name resolves to must be public (a name that
 * mixes public and private answers is refused: DNS rebinding).
 */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) {
      (callback as (e: NodeJS.ErrnoException | null, a: string, f: number) => void)(error, '', 0);
      return;
    }
    const list = addresses as dns.LookupAddress[];
    const refused = list.find((a) => isNonPublicAddress(a.address));
    if (refused || list.length === 0) {
      const failure = new TargetRefusedError(hostname, refused?.address ?? 'no address');
      (callback as (e: NodeJS.ErrnoException | null, a: string, f: number) => void)(failure, '', 0);
      return;
    }
    if (options.all) {
      (callback as (e: null, a: dns.LookupAddress[]) => void)(null, list);
    } else {
      (callback as (e: null, a: string, f: number) => void)(null, list[0]!.address, list[0]!.family);
    }
  });
};

/**
 * Checks a URL before any connection: http(s) only, no credentials, and an IP literal host must
 * be public (Node does not call the lookup for IP literals). Names are checked at connect time.
 * Returns a reason when refused.
 */
export function refuseUrl(url: string, allowPrivate: boolean): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a valid URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must use http or https';
  if (parsed.username || parsed.password) return 'must not contain credentials';
  if (allowPrivate) return undefined;
  const host = hostOf(parsed);
  if (isIP(host) && isNonPublicAddress(host)) {
    return 'points at a loopback, private, link-local or metadata address';
  }
  if (host === 'localhost' || host.endsWith('.localhost')) return 'points at localhost';
  return undefined;
}
