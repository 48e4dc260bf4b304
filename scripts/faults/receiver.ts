import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One POST the receiver got. */
export interface Receipt {
  webhookId: string;
  at: number;
  status: number;
  signatureValid: boolean;
  type?: string;
}

/**
 * The PMS's webhook receiver: a real HTTP server on 127.0.0.1 that verifies each delivery's
 * Standard Webhooks signature and records every request, whatever it answers. It answers 200, or
 * 503 (no Retry-After: the retry schedule applies) while `failing` is set.
 */
export interface WebhookReceiver {
  url: string;
  receipts: Receipt[];
  secret?: string;
  failing: boolean;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const receiver: WebhookReceiver = {
    url: '',
    receipts: [],
    failing: false,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const header = (name: string) => String(req.headers[name] ?? '');
      let signatureValid = false;
      let type: string | undefined;
      try {
        if (receiver.secret) {
          const body = new Webhook(receiver.secret).verify(raw, {
            'webhook-id': header('webhook-id'),
            'webhook-timestamp': header('webhook-timestamp'),
            'webhook-signature': header('webhook-signature'),
          }) as { type?: string };
          signatureValid = true;
          type = body.type;
        }
      } catch {
        signatureValid = false;
      }
      const status = receiver.failing ? 503 : signatureValid ? 200 : 401;
      receiver.receipts.push({
        webhookId: header('webhook-id'),
        at: Date.now(),
        status,
        signatureValid,
        type,
      });
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return receiver;
}
