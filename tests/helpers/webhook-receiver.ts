import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One request a receiver got, with what its signature verified against. */
export interface ReceivedWebhook {
  webhookId: string;
  timestamp: string;
  signature: string;
  body: { id: string; type: string; timestamp: string; seq: number; data: Record<string, unknown> };
  /** Indexes (into `secrets`) of the secrets whose signature verified. */
  verifiedWith: number[];
  at: number;
  status: number;
}

export type Responder = (
  webhook: ReceivedWebhook,
  nth: number,
) => {
  status: number;
  headers?: Record<string, string>;
  body?: string;
};

/**
 * A webhook receiver as a PMS would run one: a real HTTP server on 127.0.0.1 that verifies
 * every request with the `standardwebhooks` package and answers as `respond` says (default 200).
 * It processes each webhook-id once (`processed`), as Standard Webhooks asks of receivers.
 */
export interface Receiver {
  url: string;
  secrets: string[];
  requests: ReceivedWebhook[];
  /** First successful receipt per webhook-id. */
  processed: Map<string, ReceivedWebhook>;
  connections: number;
  respond: Responder;
  waitFor(predicate: (r: Receiver) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(
  options: { secrets?: string[]; respond?: Responder } = {},
): Promise<Receiver> {
  const server = http.createServer();
  const receiver: Receiver = {
    url: '',
    secrets: options.secrets ?? [],
    requests: [],
    processed: new Map(),
    connections: 0,
    respond: options.respond ?? (() => ({ status: 200 })),
    async waitFor(predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(receiver)) {
        if (Date.now() > deadline) {
          throw new Error(
            `receiver condition not met within ${timeoutMs} ms (${receiver.requests.length} requests, ${receiver.processed.size} processed)`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', () => {
    receiver.connections += 1;
  });
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      const verifiedWith = receiver.secrets.flatMap((secret, index) => {
        try {
          new Webhook(secret).verify(raw, headers);
          return [index];
        } catch {
          return [];
        }
      });
      const webhook: ReceivedWebhook = {
        webhookId: headers['webhook-id'],
        timestamp: headers['webhook-timestamp'],
        signature: headers['webhook-signature'],
        body: JSON.parse(raw),
        verifiedWith,
        at: Date.now(),
        status: 0,
      };
      const answer =
        receiver.secrets.length > 0 && verifiedWith.length === 0
          ? { status: 401, body: 'bad signature' }
          : receiver.respond(webhook, receiver.requests.length);
      webhook.status = answer.status;
      receiver.requests.push(webhook);
      if (answer.status >= 200 && answer.status < 300 && !receiver.processed.has(webhook.webhookId)) {
        receiver.processed.set(webhook.webhookId, webhook);
      }
      res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
      res.end(answer.body ?? 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return receiver;
}
