import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { TargetRefusedError } from '../errors/target-refused-error.js';
import { connectGuard } from './address-guard.js';

/**
 * The outbound HTTP client every caller of a URL that someone else chose shares (webhook
 * endpoints, supplier APIs): the address guard at connect time, a bound on the whole exchange,
 * a cap on what is read, no redirects.
 */

/** At most this much of an answer is read; a longer one is cut off (`bodyTooLarge`). */
export const maxBodyBytes = 64 * 1024;
const keptBodyBytes = 1024;

/** What one POST came to. Never throws: every failure is a result to record. */
export interface SendResult {
  /** HTTP status, or undefined when no response came (refused, network error, timeout). */
  statusCode?: number;
  /** The first 1 KiB of the response body. */
  body?: string;
  /** The whole response body, when it was at most `maxBodyBytes` (64 KiB). */
  fullBody?: string;
  /** The answer was longer than `maxBodyBytes`: only its first 64 KiB were read, `fullBody` is unset. */
  bodyTooLarge?: boolean;
  /** The answer's `Retry-After`, in ms from when it came (`parseRetryAfter`). */
  retryAfterMs?: number;
  error?: string;
  /** The SSRF guard refused the target: no connection was made. */
  refused?: boolean;
  durationMs: number;
}

// Keep-alive pools: a busy endpoint reuses connections, each checked by the guard when it was
// opened. One pool per policy: a socket opened where private targets are allowed (suppliers on
// loopback in a local run) must never carry a request of a caller whose guard refuses them, since
// a reused socket skips the guard's lookup.
const agents = new Map<string, http.Agent>();

function agentFor(protocol: 'http:' | 'https:', allowPrivate: boolean): http.Agent {
  const key = `${protocol}${allowPrivate ? 'private' : 'public'}`;
  let agent = agents.get(key);
  if (!agent) {
    const options = { keepAlive: true, maxSockets: 64, timeout: 60_000 };
    agent = protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
    agents.set(key, agent);
  }
  return agent;
}

/**
 * POSTs a JSON body. Redirects are not followed (a 3xx is a failed attempt), the whole exchange
 * is bounded by `timeoutMs`, and at most 64 KiB of the answer is read: callers that parse the
 * answer get all of it (`fullBody`) or know it was longer (`bodyTooLarge`), never a cut-off text.
 */
export function postJson(input: {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  allowPrivate: boolean;
  /** The setting that would allow private targets, named in a refusal. */
  allowPrivateSetting?: string;
  userAgent: string;
}): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: Omit<SendResult, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...result, durationMs: elapsed() });
    };

    let url: URL;
    try {
      url = new URL(input.url);
    } catch {
      finish({ error: 'invalid URL' });
      return;
    }
    let lookup: LookupFunction | undefined;
    try {
      lookup = connectGuard(url, {
        allowPrivate: input.allowPrivate,
        setting: input.allowPrivateSetting ?? "the caller's *_ALLOW_PRIVATE_TARGETS setting",
      });
    } catch (error) {
      finish({ error: (error as Error).message, refused: true });
      return;
    }
    const transport = url.protocol === 'https:' ? https : http;
    const request = transport.request(url, {
      method: 'POST',
      agent: agentFor(url.protocol as 'http:' | 'https:', input.allowPrivate),
      lookup,
      headers: {
        'content-type': 'application/json',
        'user-agent': input.userAgent,
        'content-length': String(Buffer.byteLength(input.body)),
        ...input.headers,
      },
    });
    timer = setTimeout(() => {
      request.destroy(new Error(`no complete answer within ${input.timeoutMs} ms`));
    }, input.timeoutMs);

    request.on('error', (error) => {
      const refused = error instanceof TargetRefusedError;
      finish({ error: refused ? error.message : describeError(error), refused });
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let received = 0;
      const done = (tooLarge: boolean) => {
        const all = Buffer.concat(chunks);
        finish({
          statusCode: response.statusCode,
          body: all.subarray(0, keptBodyBytes).toString('utf8'),
          ...(tooLarge ? { bodyTooLarge: true } : { fullBody: all.toString('utf8') }),
          retryAfterMs: parseRetryAfter(response.headers['retry-after']),
        });
      };
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk.subarray(0, Math.max(0, maxBodyBytes + 1 - received)));
        received += chunk.length;
        if (received > maxBodyBytes) {
          // Over the cap: the rest of a large answer is not worth the time or the memory.
          done(true);
          response.destroy();
        }
      });
      response.on('end', () => done(false));
      response.on('error', (error) => {
        if (!settled) finish({ statusCode: response.statusCode, error: describeError(error) });
      });
    });
    request.end(input.body);
  });
}

function describeError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
}

/** Longest Retry-After we honour; a longer one is cut to this. */
export const maxRetryAfterMs = 24 * 3_600_000;

/** `Retry-After` as delay-seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(ms, 0), maxRetryAfterMs);
}
