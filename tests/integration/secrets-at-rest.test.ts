import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resealStoredSecrets } from '../../src/db/sealed-secrets.js';
import { SecretUnreadableError } from '../../src/errors/secret-unreadable-error.js';
import { createSecretBox, generateSecretsKey, isSealed, keyIdOf } from '../../src/secrets.js';
import { type EndpointRow, signingSecrets } from '../../src/webhooks/endpoints.js';
import { createTestContext, json, repoRoot, type TestContext, testSecretsKey } from '../helpers/context.js';
import { sealedTheOldWay } from '../helpers/legacy-secrets.js';

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

  it('does not open a sealed value copied to another row or column', async () => {
    const a = await register('https://a.example.com/copied');
    const b = await register('https://b.example.com/copied');
    const { secret: sealedA } = await rawRow(a.id);
    const { secret: sealedB } = await rawRow(b.id);
    // A's sealed secret written into B's row…
    await ctx.api.db('webhook_endpoints').where({ id: b.id }).update({ secret: sealedA });
    const rowB = await rawRow(b.id);
    expect(() => signingSecrets(rowB, ctx.api.secrets)).toThrow(SecretUnreadableError);
    // …or into A's own previous_secret column.
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: a.id })
      .update({ previous_secret: sealedA, previous_secret_expires_at: new Date(Date.now() + 3_600_000) });
    const rowA = await rawRow(a.id);
    expect(() => signingSecrets(rowA, ctx.api.secrets)).toThrow(SecretUnreadableError);
    // In its own place it still opens.
    expect(ctx.api.secrets.open(sealedA, { column: 'webhook_endpoints.secret', row: a.id })).toBe(a.secret);
    // Put the rows back as they were, for the resealing tests below.
    await ctx.api.db('webhook_endpoints').where({ id: b.id }).update({ secret: sealedB });
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: a.id })
      .update({ previous_secret: null, previous_secret_expires_at: null });

    // A supplier's api key copied to another supplier.
    for (const code of ['COPY-1', 'COPY-2']) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/suppliers',
        key: ctx.adminKey,
        payload: {
          code,
          name: code,
          apiUrl: 'https://s.example.com/po',
          apiKey: `key-of-${code}`,
          leadTimeDays: 2,
        },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    const { api_key: sealedKey } = await ctx.api.db('suppliers').where({ code: 'COPY-1' }).first('api_key');
    expect(() => ctx.api.secrets.open(sealedKey, { column: 'suppliers.api_key', row: 'COPY-2' })).toThrow(
      SecretUnreadableError,
    );
    expect(ctx.api.secrets.open(sealedKey, { column: 'suppliers.api_key', row: 'COPY-1' })).toBe(
      'key-of-COPY-1',
    );
  });

  it('seals sf1 values (which named no row) again bound to their row and column, at npm run migrate', async () => {
    const endpoint = await register('https://legacy.example.com/hook');
    const key = Buffer.from(testSecretsKey, 'base64');
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: endpoint.id })
      .update({ secret: sealedTheOldWay(key, endpoint.secret) });
    await ctx.api.db('suppliers').insert({
      code: 'LEGACY',
      name: 'Legacy',
      api_url: 'https://legacy.example.com/po',
      api_key: sealedTheOldWay(key, 'legacy-supplier-key'),
      lead_time_days: 2,
    });
    // Values sealed the old way still open where they are…
    expect(signingSecrets(await rawRow(endpoint.id), ctx.api.secrets)).toEqual([endpoint.secret]);

    // …and the release step (migrate) seals them again in the new form.
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/migrate.ts'], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env },
    });
    expect(stdout).toMatch(
      /sealed the stored secrets of [1-9]\d* webhook endpoint\(s\), [1-9]\d* supplier\(s\)/,
    );
    const row = await rawRow(endpoint.id);
    expect(row.secret).toMatch(/^sf2:/);
    expect(signingSecrets(row, ctx.api.secrets)).toEqual([endpoint.secret]);
    const { api_key: resealed } = await ctx.api.db('suppliers').where({ code: 'LEGACY' }).first('api_key');
    expect(resealed).toMatch(/^sf2:/);
    expect(ctx.api.secrets.open(resealed, { column: 'suppliers.api_key', row: 'LEGACY' })).toBe(
      'legacy-supplier-key',
    );
    expect(() => ctx.api.secrets.open(resealed, { column: 'suppliers.api_key', row: 'COPY-1' })).toThrow(
      SecretUnreadableError,
    );
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
    expect(onlyNew.open(sealedApiKey, { column: 'suppliers.api_key', row: 'ACME' })).toBe(
      'acme-secret-key-0001',
    );
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
