import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/errors/domain-error.js';
import { fetchSource } from '../../src/images/fetch-source.js';
import { postJson } from '../../src/outbound/http.js';
import { addressTable, literalUrl } from '../helpers/address-table.js';
import { noPrivateHostName, privateHostName } from '../helpers/private-host.js';

/**
 * Both callers of the SSRF guard (webhook delivery through postJson, image downloads through
 * fetchSource) judged by the same table. Only non-public entries are sent, and every one must be
 * refused before a connection: the only listening server is on 127.0.0.1 and counts what reaches it.
 */

let server: http.Server;
let port: number;
let connections = 0;

beforeAll(async () => {
  server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end('x'));
  server.on('connection', () => connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  server.close();
});

const refusedEntries = addressTable.filter((entry) => !entry.public);
const withPort = (address: string) => literalUrl(address, '/').replace(/\/$/, `:${port}/`);

const webhook = (url: string, allowPrivate = false) =>
  postJson({
    url,
    body: '{}',
    headers: {},
    timeoutMs: 2000,
    allowPrivate,
    allowPrivateSetting: 'WEBHOOK_ALLOW_PRIVATE_TARGETS',
    userAgent: 'test',
  });

const image = (url: string, allowPrivate = false) =>
  fetchSource(url, { allowPrivate, maxBytes: 1024, connectTimeoutMs: 2000, totalTimeoutMs: 2000 });

describe.each([
  ['webhook delivery', 'webhook'],
  ['image download', 'image'],
] as const)('%s', (_name, caller) => {
  it.each(refusedEntries)('refuses $address ($why) without connecting', async ({ address }) => {
    const before = connections;
    const url = withPort(address);
    if (caller === 'webhook') {
      const result = await webhook(url);
      expect(result.refused).toBe(true);
      expect(result.statusCode).toBeUndefined();
      expect(result.error).toMatch(/non-public address/);
    } else {
      const error = await image(url).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DomainError);
      expect(error).toMatchObject({ code: 'source_forbidden' });
    }
    expect(connections).toBe(before);
  });

  it('refuses localhost by name, and reaches the loopback server only when private targets are allowed', async () => {
    const before = connections;
    for (const host of ['localhost', 'localhost.']) {
      const url = `http://${host}:${port}/`;
      if (caller === 'webhook') {
        const result = await webhook(url);
        expect(result.refused).toBe(true);
        expect(result.error).not.toMatch(/127\.0\.0\.1|::1/);
      } else {
        const error = await image(url).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'source_forbidden' });
        expect(JSON.stringify(error)).not.toMatch(/127\.0\.0\.1|::1/);
      }
    }
    expect(connections).toBe(before);
    // The same target is reached once allowed: the refusals above were the guard's doing.
    if (caller === 'webhook') expect((await webhook(withPort('127.0.0.1'), true)).statusCode).toBe(200);
    else expect((await image(withPort('127.0.0.1'), true)).bytes.toString()).toBe('x');
    expect(connections).toBe(before + 1);
  });
});

describe('keep-alive sockets', () => {
  it('a socket opened where private targets are allowed never serves a caller that refuses them', async (test) => {
    const host = await privateHostName();
    if (!host) {
      test.skip(noPrivateHostName);
      return;
    }
    const { name, address } = host;
    const named = http.createServer((_req, res) => res.writeHead(200).end('{}'));
    named.keepAliveTimeout = 60_000;
    let opened = 0;
    named.on('connection', () => opened++);
    named.listen(0, address);
    await once(named, 'listening');
    const url = `http://${name}:${(named.address() as AddressInfo).port}/`;
    try {
      // A supplier call in a local run (SUPPLIER_ALLOW_PRIVATE_TARGETS): the socket stays in a pool.
      expect((await webhook(url, true)).statusCode).toBe(200);
      expect(opened).toBe(1);
      // A webhook to the same name under the default policy: refused, not carried by that socket.
      const refused = await webhook(url, false);
      expect(refused.refused).toBe(true);
      expect(refused.statusCode).toBeUndefined();
      expect(opened).toBe(1);
      // The allowing pool still reuses its socket.
      expect((await webhook(url, true)).statusCode).toBe(200);
      expect(opened).toBe(1);
    } finally {
      named.closeAllConnections();
      named.close();
    }
  });
});
