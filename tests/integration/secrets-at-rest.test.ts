import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resealStoredSecrets } from '../../src/db/sealed-secrets.js';
import { createSecretBox, generateSecretsKey, isSealed, keyIdOf } from '../../src/secrets.js';
import { type EndpointRow, signingSecrets } from '../../src/webhooks/endpoints.js';
import { createTestContext, json, repoRoot, type TestContext, testSecretsKey } from '../helpers/context.js';

const run = promisify(execFile);
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx?.close());

const rawRow = async (id: string) =>
  (await ctx.api.db<EndpointRow>('webhook_endpoints').where({ id }).first()) as EndpointRow;

async function register(url = 'https://hooks.example.com/pms') {
  const res = await ctx.request({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    key: ctx.adminKey,
    payload: { url, eventTypes: ['product.*'] },
  });
  expect(res.statusCode).toBe(201);
  return json(res) as { id: string; secret: string };
}

describe('webhook signing secrets at rest', () => {
  it('stores the current and previous secret sealed: the raw columns hold neither', async () => {
    const endpoint = await register();
    const rotated = json(
      await ctx.request({
        method: 'POST',
        url: `/api/webhooks/endpoints/${endpoint.id}/rotate-secret`,
        key: ctx.adminKey,
      }),
    ) as { secret: string };
    const { rows } = await ctx.api.db.raw<{ rows: Record<string, unknown>[] }>(
      'select * from webhook_endpoints where id = ?',
      [endpoint.id],
    );
    const raw = JSON.stringify(rows[0]);
    for (const secret of [endpoint.secret, rotated.secret]) {
      expect(raw).not.toContain(secret);
      // Not even the part after the whsec_ prefix, in any encoding a reader might try.
      const bare = secret.replace(/^whsec_/, '');
      expect(raw).not.toContain(bare);
      expect(raw).not.toContain(Buffer.from(bare, 'base64').toString('hex'));
    }
    const row = await rawRow(endpoint.id);
    expect(isSealed(row.secret) && isSealed(row.previous_secret!)).toBe(true);
    // Nothing else kept a copy: the event log and the audit trail.
    const copies = await ctx.api.db.raw<{ rows: unknown[] }>(
      `select 1 from events where data::text like ? or data::text like ?
       union all select 1 from audit_log where coalesce(after::text, '') like ? or coalesce(before::text, '') like ?`,
      [`%${endpoint.secret}%`, `%${rotated.secret}%`, `%${endpoint.secret}%`, `%${rotated.secret}%`],
    );
    expect(copies.rows).toEqual([]);
    // The reader opens both: the new secret signs, the old one still does during the overlap.
    expect(signingSecrets(row, ctx.api.secrets)).toEqual([rotated.secret, endpoint.secret]);
  });

  it('seals plaintext rows of older releases and reseals under a rotated key (npm run secrets -- reseal)', async () => {
    const sealed = await register('https://a.example.com/hook');
    // A row as an older release wrote it: plaintext.
    const legacy = await register('https://b.example.com/hook');
    await ctx.api.db('webhook_endpoints').where({ id: legacy.id }).update({ secret: legacy.secret });
    expect((await rawRow(legacy.id)).secret).toBe(legacy.secret);
    // Supplier api keys are sealed by the same box and resealed by the same command.
    const supplier = await ctx.request({
      method: 'POST',
      url: '/api/pms/suppliers',
      key: ctx.adminKey,
      payload: {
        code: 'ACME',
        name: 'Acme',
        apiUrl: 'https://supplier.example.com/orders',
        apiKey: 'acme-secret-key-0001',
        leadTimeDays: 3,
      },
    });
    expect(supplier.statusCode, supplier.body).toBe(201);

    const newKey = generateSecretsKey();
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/secrets.ts', 'reseal'], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env, SECRETS_KEY: newKey, SECRETS_KEY_PREVIOUS: testSecretsKey },
    });
    const newId = keyIdOf(Buffer.from(newKey, 'base64'));
    expect(stdout).toContain(`under key ${newId}`);

    // The old key is no longer needed: the new one alone opens every value.
    const onlyNew = createSecretBox({ current: Buffer.from(newKey, 'base64') });
    for (const { id, secret } of [sealed, legacy]) {
      const row = await rawRow(id);
      expect(row.secret.split(':')[1]).toBe(newId);
      expect(row.secret).not.toContain(secret);
      expect(signingSecrets(row, onlyNew)).toEqual([secret]);
    }
    const { api_key: sealedApiKey } = await ctx.api.db('suppliers').where({ code: 'ACME' }).first('api_key');
    expect(sealedApiKey.split(':')[1]).toBe(newId);
    expect(onlyNew.open(sealedApiKey)).toBe('acme-secret-key-0001');
    // Safe to run again: nothing left to reseal.
    expect(await resealStoredSecrets(ctx.api.db, onlyNew)).toEqual({ webhook_endpoints: 0, suppliers: 0 });
  });

  it('refuses to reseal without a key', async () => {
    const failed = await run(process.execPath, ['--import', 'tsx', 'scripts/secrets.ts', 'reseal'], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env, SECRETS_KEY: '', SECRETS_KEY_FILE: '/nonexistent/key' },
    }).catch((error: { code: number; stderr: string }) => error);
    expect(failed).toMatchObject({ code: 1 });
    expect((failed as { stderr: string }).stderr).toContain('SECRETS_KEY');
  });
});

describe('endpoint URLs in events', () => {
  it('carry no userinfo or query string, as a pms key reads them; the admin API keeps the full URL', async () => {
    const url = 'https://hooks.example.com/pms/in?token=s3cr3t-token&x=1#frag';
    const endpoint = await register(url);
    await ctx.request({
      method: 'PUT',
      url: `/api/webhooks/endpoints/${endpoint.id}`,
      key: ctx.adminKey,
      payload: { url: `${url}&v=2`, eventTypes: ['product.*'] },
    });
    const feed = await ctx.request({ method: 'GET', url: '/api/pms/events?types=webhook.*&limit=1000' });
    const own = json(feed).items.filter(
      (e: { aggregate: { id: string } }) => e.aggregate.id === endpoint.id,
    ) as { type: string; data: { endpoint: { url: string } } }[];
    expect(own.map((e) => e.type)).toEqual(['webhook.endpoint_created', 'webhook.endpoint_updated']);
    for (const event of own) expect(event.data.endpoint.url).toBe('https://hooks.example.com/pms/in');
    expect(feed.body).not.toContain('s3cr3t-token');
    const admin = await ctx.request({
      method: 'GET',
      url: `/api/webhooks/endpoints/${endpoint.id}`,
      key: ctx.adminKey,
    });
    expect(json(admin).url).toBe(`${url}&v=2`);
  });
});
