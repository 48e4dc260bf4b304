import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

/**
 * A stand-in for Cloudinary's upload API on 127.0.0.1, for the real `cloudinary` SDK to talk to
 * (through `upload_prefix`). It checks each request's signature the way Cloudinary does (the
 * signed parameters sorted by name, `k=v` joined with `&`, the API secret appended, sha1 or sha256)
 * and answers with the fields the SDK reads. Uploads with an existing public_id overwrite it.
 */
export interface FakeCloudinary {
  origin: string;
  /** Every request, in order, with whether its signature was valid. */
  requests: {
    action: string;
    publicId: string | undefined;
    params: Record<string, string>;
    signatureOk: boolean;
    status: number;
  }[];
  /** Stored assets by public_id. */
  assets: Map<string, { bytes: Buffer; version: number; uploads: number }>;
  /** Answers the next `count` uploads with `status` (and Cloudinary's error body). */
  failNextUploads(count: number, status?: number): void;
  close(): Promise<void>;
}

/** Parameters Cloudinary leaves out of the signature. */
const unsigned = new Set([
  'file',
  'api_key',
  'signature',
  'resource_type',
  'cloud_name',
  'signature_algorithm',
]);

export function expectedSignature(
  params: Record<string, string>,
  apiSecret: string,
  algorithm: 'sha1' | 'sha256',
): string {
  const toSign = Object.entries(params)
    .filter(([key, value]) => !unsigned.has(key) && value !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`.replace(/&/g, '%26'))
    .join('&');
  return createHash(algorithm)
    .update(toSign + apiSecret)
    .digest('hex');
}

function parseMultipart(
  body: Buffer,
  contentType: string,
): { fields: Record<string, string>; file?: Buffer } {
  const boundary = contentType.match(/boundary=(?:"([^"]+)"|([^;]+))/i);
  if (!boundary) throw new Error('no multipart boundary');
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const fields: Record<string, string> = {};
  let file: Buffer | undefined;
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, start);
    if (next === -1) break;
    const part = body.subarray(start + 2, next - 2); // skip CRLF after the delimiter and before the next
    const headerEnd = part.indexOf('\r\n\r\n');
    const headers = part.subarray(0, headerEnd).toString();
    const content = part.subarray(headerEnd + 4);
    const name = headers.match(/name="([^"]+)"/)?.[1];
    if (name === 'file') file = Buffer.from(content);
    else if (name) fields[name] = content.toString();
    at = next;
  }
  return { fields, file };
}

export async function startFakeCloudinary(account: {
  cloudName: string;
  apiKey: string;
  apiSecret: string;
}): Promise<FakeCloudinary> {
  const requests: FakeCloudinary['requests'] = [];
  const assets: FakeCloudinary['assets'] = new Map();
  let failures: { count: number; status: number } = { count: 0, status: 500 };
  let clock = Math.floor(Date.now() / 1000);

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const route = req.url?.match(/^\/v1_1\/([^/]+)\/image\/(upload|destroy)$/);
    if (req.method !== 'POST' || !route || route[1] !== account.cloudName) {
      return answer(404, { error: { message: `Unknown route ${req.method} ${req.url}` } });
    }
    const action = route[2]!;
    const { fields, file } = parseMultipart(Buffer.concat(chunks), req.headers['content-type'] ?? '');
    const algorithm = fields.signature?.length === 64 ? 'sha256' : 'sha1';
    const signatureOk =
      fields.api_key === account.apiKey &&
      fields.signature === expectedSignature(fields, account.apiSecret, algorithm) &&
      Math.abs(Number(fields.timestamp) - Date.now() / 1000) < 3600;
    const record = { action, publicId: fields.public_id, params: fields, signatureOk, status: 200 };
    requests.push(record);
    const reply = (status: number, body: unknown) => {
      record.status = status;
      answer(status, body);
    };
    if (!signatureOk) {
      return reply(401, {
        error: { message: `Invalid Signature ${fields.signature}. String to sign - '...'.` },
      });
    }
    if (action === 'destroy') {
      const existed = fields.public_id !== undefined && assets.delete(fields.public_id);
      return reply(200, { result: existed ? 'ok' : 'not found' });
    }
    if (failures.count > 0) {
      failures.count--;
      return reply(failures.status, { error: { message: 'Server error, try again' } });
    }
    if (!file) return reply(400, { error: { message: 'Missing required parameter - file' } });
    // Without a public_id Cloudinary makes up a new one: a retry would then duplicate the asset.
    const publicId = fields.public_id ?? randomUUID().replaceAll('-', '');
    const existing = assets.get(publicId);
    if (existing && fields.overwrite === '0') {
      return reply(200, { public_id: publicId, version: existing.version, existing: true });
    }
    const version = ++clock;
    assets.set(publicId, { bytes: file, version, uploads: (existing?.uploads ?? 0) + 1 });
    const meta = await sharp(file).metadata();
    const format = meta.format === 'jpeg' ? 'jpg' : meta.format === 'heif' ? 'avif' : meta.format;
    const path = `v${version}/${publicId}.${format}`;
    reply(200, {
      asset_id: createHash('md5').update(publicId).digest('hex'),
      public_id: publicId,
      version,
      version_id: randomUUID().replaceAll('-', ''),
      signature: createHash('sha1').update(`${publicId}${version}`).digest('hex'),
      width: meta.width,
      height: meta.height,
      format,
      resource_type: 'image',
      created_at: new Date().toISOString(),
      tags: [],
      bytes: file.length,
      type: 'upload',
      etag: createHash('md5').update(file).digest('hex'),
      placeholder: false,
      url: `http://res.cloudinary.com/${account.cloudName}/image/upload/${path}`,
      secure_url: `https://res.cloudinary.com/${account.cloudName}/image/upload/${path}`,
      overwritten: existing !== undefined,
      original_filename: 'file',
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    assets,
    failNextUploads(count, status = 500) {
      failures = { count, status };
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
