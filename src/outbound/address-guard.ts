import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { TargetRefusedError } from '../errors/target-refused-error.js';

/**
 * The one SSRF guard of outbound HTTP to URLs someone else chose (webhook endpoints, image
 * source URLs, supplier APIs). Without it such a URL could make our workers call loopback
 * services, the private network or a cloud metadata endpoint.
 *
 * Policy: only global unicast addresses are reachable. Ranges come from ipaddr.js (IANA special
 * purpose registries), not from a hand-written list. IPv6 forms that carry an IPv4 address
 * (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, SIIT `::ffff:0:0:0/96`, NAT64
 * `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address they carry; local-use NAT64
 * `64:ff9b:1::/48`, Teredo and every other special IPv6 range are refused outright, and so is
 * anything outside `2000::/3`.
 *
 * The check runs where the connection is made (a DNS lookup hook, and IP literals before
 * connecting), on every redirect, so a name that resolves differently later is still caught.
 */

/** The range that makes an address non-public (`loopback`, `private`, `6to4 of loopback`…), or undefined when it is public. */
export function nonPublicRange(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return 'not an IP address';
  const parsed = ipaddr.parse(address);
  return parsed.kind() === 'ipv4' ? ipv4Range(parsed as ipaddr.IPv4) : ipv6Range(parsed as ipaddr.IPv6);
}

export const isPublicAddress = (address: string) => nonPublicRange(address) === undefined;

function ipv4Range(address: ipaddr.IPv4): string | undefined {
  const range = address.range();
  return range === 'unicast' ? undefined : range;
}

const globalUnicast = ipaddr.parseCIDR('2000::/3');

function ipv6Range(address: ipaddr.IPv6): string | undefined {
  const embedded = embeddedIpv4(address);
  if (embedded) {
    const inner = ipv4Range(embedded.address);
    return inner ? `${embedded.form} of ${inner}` : undefined;
  }
  const range = address.range();
  if (range !== 'unicast') return range;
  if (!address.match(globalUnicast)) return 'not global unicast';
  return undefined;
}

const ipv4Carriers: { form: string; cidr: [ipaddr.IPv6, number]; at: 'end' | '6to4' }[] = [
  { form: 'ipv4-mapped', cidr: ipaddr.IPv6.parseCIDR('::ffff:0:0/96'), at: 'end' },
  { form: 'ipv4-translated', cidr: ipaddr.IPv6.parseCIDR('::ffff:0:0:0/96'), at: 'end' },
  { form: 'ipv4-compatible', cidr: ipaddr.IPv6.parseCIDR('::/96'), at: 'end' },
  { form: 'nat64', cidr: ipaddr.IPv6.parseCIDR('64:ff9b::/96'), at: 'end' },
  { form: '6to4', cidr: ipaddr.IPv6.parseCIDR('2002::/16'), at: '6to4' },
];

/** The IPv4 address an IPv6 address carries, and in which form; undefined when it carries none. */
function embeddedIpv4(address: ipaddr.IPv6): { form: string; address: ipaddr.IPv4 } | undefined {
  // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones.
  const range = address.range();
  if (range === 'unspecified' || range === 'loopback') return undefined;
  const bytes = address.toByteArray();
  for (const carrier of ipv4Carriers) {
    if (!address.match(carrier.cidr)) continue;
    const octets = carrier.at === 'end' ? bytes.slice(12, 16) : bytes.slice(2, 6);
    return { form: carrier.form, address: new ipaddr.IPv4(octets) };
  }
  return undefined;
}

/** Host of a URL without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

const isLocalhostName = (host: string) => /(^|\.)localhost\.?$/i.test(host);

/**
 * A DNS lookup for `http.request` that refuses non-public addresses. Node calls it when it opens
 * a connection to a host name; every address the name resolves to must be public (a name that
 * mixes public and private answers is refused: DNS rebinding).
 */
export function guardedLookup(setting: string): LookupFunction {
  return (hostname, options, callback) => {
    const fail = callback as (e: NodeJS.ErrnoException | null, a: string, f: number) => void;
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return fail(error, '', 0);
      const list = addresses as dns.LookupAddress[];
      if (list.length === 0 || list.some((a) => !isPublicAddress(a.address))) {
        return fail(new TargetRefusedError(hostname, setting), '', 0);
      }
      if (options.all) return (callback as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      fail(null, list[0]!.address, list[0]!.family);
    });
  };
}

/**
 * The guard for one request: `undefined` when private targets are allowed, otherwise the lookup
 * to pass to `http.request`, after refusing (by throwing TargetRefusedError) an IP literal or
 * localhost name that would not go through a lookup.
 */
export function connectGuard(url: URL, policy: { allowPrivate: boolean; setting: string }) {
  if (policy.allowPrivate) return undefined;
  const host = hostOf(url);
  if (ipaddr.isValid(host) ? !isPublicAddress(host) : isLocalhostName(host)) {
    throw new TargetRefusedError(host, policy.setting);
  }
  return guardedLookup(policy.setting);
}

/**
 * Checks a URL at registration, before any connection: http(s) only, no credentials, and unless
 * private targets are allowed neither a non-public IP literal nor `localhost` (`localhost.`,
 * `*.localhost`). Names are checked again at connect time. Returns a reason when refused.
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
  if (ipaddr.isValid(host)) {
    const range = nonPublicRange(host);
    if (range) return `points at a non-public address (${range})`;
  } else if (isLocalhostName(host)) {
    return 'points at localhost';
  }
  return undefined;
}
