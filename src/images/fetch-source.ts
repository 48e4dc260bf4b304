import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { DomainError } from '../errors.js';

/**
 * SSRF-safe download of an image source URL: http(s) only; every address is checked when the
 * socket connects (so DNS rebinding between a check and the connect cannot slip through) and on
 * every redirect; at most `maxRedirects` hops; a byte cap enforced while streaming; a connect and
 * a total timeout. Loopback, private, link-local (cloud metadata included) and other special
 * ranges are refused unless `allowPrivate`.
 */

export interface FetchSourceOptions {
  allowPrivate: boolean;
  maxBytes: number;
  connectTimeoutMs: number;
  totalTimeoutMs: number;
  maxRedirects?: number;
}

export interface FetchedSource {
  bytes: Buffer;
  contentType: string | undefined;
  /** The URL the bytes came from, after redirects. */
  finalUrl: string;
}

/** The download failed for a reason worth retrying (a 5xx, 429, a timeout, a reset connection). */
export class SourceTransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SourceTransientError';
  }
}

const forbiddenRanges = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  forbiddenRanges.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96], // NAT64 (embeds an IPv4 address)
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (fd00:ec2::254 is AWS metadata)
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  forbiddenRanges.addSubnet(network, prefix, 'ipv6');
}

/** True for addresses a source URL may never reach unless private sources are allowed. */
export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return forbiddenRanges.check(address, 'ipv4');
  if (family === 6) {
    const mapped = address.toLowerCase().match(/^(?:0{0,4}:){0,5}ffff:(\d+\.\d+\.\d+\.\d+)$/);
    if (mapped) return forbiddenRanges.check(mapped[1]!, 'ipv4');
    const mappedHex = address.toLowerCase().match(/^(?:0{0,4}:){0,5}ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/);
    if (mappedHex) {
      const high = Number.parseInt(mappedHex[1]!, 16);
      const low = Number.parseInt(mappedHex[2]!, 16);
      return forbiddenRanges.check(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`, 'ipv4');
    }
    return forbiddenRanges.check(address, 'ipv6');
  }
  return true; // not an address at all: refuse
}

function forbidden(url: URL, address: string): DomainError {
  return new DomainError(
    'source_forbidden',
    `The source ${url.host} resolves to ${address}, a loopback, private or link-local address`,
    { url: url.toString(), address },
  );
}

/** A DNS lookup that refuses forbidden addresses: node calls it when the socket connects. */
function guardedLookup(
  url: URL,
  allowPrivate: boolean,
  refused: (error: DomainError) => void,
): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 0);
      const bad = allowPrivate ? undefined : addresses.find((a) => isForbiddenAddress(a.address));
      if (bad) {
        const domainError = forbidden(url, bad.address);
        refused(domainError);
        return callback(domainError, '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);

export async function fetchSource(source: string, options: FetchSourceOptions): Promise<FetchedSource> {
  const maxRedirects = options.maxRedirects ?? 3;
  const deadline = AbortSignal.timeout(options.totalTimeoutMs);
  let url = new URL(source);
  for (let hop = 0; ; hop++) {
    const response = await requestOnce(url, options, deadline);
    if (redirectStatuses.has(response.status)) {
      response.body.destroy();
      if (!response.location) {
        throw new DomainError(
          'source_unavailable',
          `The source answered ${response.status} without Location`,
          {
            url: url.toString(),
          },
        );
      }
      if (hop >= maxRedirects) {
        throw new DomainError('source_unavailable', `The source redirected more than ${maxRedirects} times`, {
          url: source,
          maxRedirects,
        });
      }
      url = new URL(response.location, url);
      continue;
    }
    if (response.status === 429 || response.status >= 500) {
      response.body.destroy();
      throw new SourceTransientError(`The source answered ${response.status}`);
    }
    if (response.status !== 200) {
      response.body.destroy();
      throw new DomainError('source_unavailable', `The source answered ${response.status}`, {
        url: url.toString(),
        status: response.status,
      });
    }
    const bytes = await readCapped(response.body, options.maxBytes, url, response.declaredLength);
    return { bytes, contentType: response.contentType, finalUrl: url.toString() };
  }
}

interface RawResponse {
  status: number;
  location: string | undefined;
  contentType: string | undefined;
  declaredLength: number | undefined;
  body: http.IncomingMessage;
}

function requestOnce(url: URL, options: FetchSourceOptions, deadline: AbortSignal): Promise<RawResponse> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(
      new DomainError('source_forbidden', `Only http and https sources are allowed, not ${url.protocol}`, {
        url: url.toString(),
      }),
    );
  }
  // An IP literal never goes through lookup: check it here.
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(literal) && !options.allowPrivate && isForbiddenAddress(literal)) {
    return Promise.reject(forbidden(url, literal));
  }
  return new Promise((resolve, reject) => {
    let refusal: DomainError | undefined;
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(url, {
      method: 'GET',
      signal: deadline,
      lookup: guardedLookup(url, options.allowPrivate, (error) => {
        refusal = error;
      }),
      headers: { accept: 'image/*', 'user-agent': 'stockflow-images/1' },
    });
    const connectTimer = setTimeout(() => {
      request.destroy(
        new SourceTransientError(`No connection to ${url.host} within ${options.connectTimeoutMs} ms`),
      );
    }, options.connectTimeoutMs);
    request.on('socket', (socket) => {
      if (!socket.connecting) clearTimeout(connectTimer);
      else socket.once('connect', () => clearTimeout(connectTimer));
    });
    request.on('response', (response) => {
      clearTimeout(connectTimer);
      const length = Number(response.headers['content-length']);
      resolve({
        status: response.statusCode ?? 0,
        location: response.headers.location,
        contentType: response.headers['content-type'],
        declaredLength: Number.isFinite(length) ? length : undefined,
        body: response,
      });
    });
    request.on('error', (error) => {
      clearTimeout(connectTimer);
      if (refusal) return reject(refusal);
      if (error instanceof DomainError || error instanceof SourceTransientError) return reject(error);
      if (deadline.aborted) {
        return reject(new SourceTransientError(`The source took longer than ${options.totalTimeoutMs} ms`));
      }
      reject(new SourceTransientError(`Could not download the source: ${error.message}`, { cause: error }));
    });
    request.end();
  });
}

async function readCapped(
  body: http.IncomingMessage,
  maxBytes: number,
  url: URL,
  declaredLength: number | undefined,
): Promise<Buffer> {
  const tooLarge = () =>
    new DomainError('image_too_large', `The source is larger than ${maxBytes} bytes`, {
      url: url.toString(),
      maxBytes,
    });
  if (declaredLength !== undefined && declaredLength > maxBytes) {
    body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) {
        body.destroy();
        throw tooLarge();
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof DomainError) throw error;
    throw new SourceTransientError(`The download was interrupted: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return Buffer.concat(chunks, total);
}
