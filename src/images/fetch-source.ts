import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { DomainError } from '../errors/domain-error.js';
import { SourceTransientError } from '../errors/source-transient-error.js';
import { TargetRefusedError } from '../errors/target-refused-error.js';
import { connectGuard } from '../outbound/address-guard.js';

/**
 * SSRF-safe download of an image source URL: http(s) only; every address is checked when the
 * socket connects (so DNS rebinding between a check and the connect cannot slip through) and on
 * every redirect, by the shared guard of src/outbound/address-guard.ts; at most `maxRedirects`
 * hops; a byte cap enforced while streaming; a connect and a total timeout.
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

/** A refusal of the shared guard, as the image job's domain error (never the resolved address). */
function forbidden(url: URL): DomainError {
  return new DomainError(
    'source_forbidden',
    `The source ${url.host} is or resolves to a non-public address (loopback, private, link-local, metadata or reserved)`,
    { url: url.toString(), setting: allowPrivateSetting },
  );
}

const allowPrivateSetting = 'IMAGE_ALLOW_PRIVATE_SOURCES';

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
  // Checked again on every hop: a redirect may point anywhere.
  let lookup: LookupFunction | undefined;
  try {
    lookup = connectGuard(url, { allowPrivate: options.allowPrivate, setting: allowPrivateSetting });
  } catch (error) {
    return Promise.reject(error instanceof TargetRefusedError ? forbidden(url) : error);
  }
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(url, {
      method: 'GET',
      signal: deadline,
      lookup,
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
      if (error instanceof TargetRefusedError) return reject(forbidden(url));
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
