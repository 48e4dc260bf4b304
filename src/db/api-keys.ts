import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * `pms`: the PMS's routes; `admin`: every route except Bull Board's write actions; `ops`: Bull
 * Board's write actions (retry, clean, pause, promote, obliterate), given on purpose, never implied.
 */
export const scopes = ['pms', 'admin', 'ops'] as const;
export type Scope = (typeof scopes)[number];

export interface ApiKeyInfo {
  id: string;
  name: string;
  keyPrefix: string;
  scopes: Scope[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface ApiKeyRow {
  id: string;
  name: string;
  key_prefix: string;
  scopes: Scope[];
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toInfo = (row: ApiKeyRow): ApiKeyInfo => ({
  id: row.id,
  name: row.name,
  keyPrefix: row.key_prefix,
  scopes: row.scopes,
  createdAt: row.created_at.toISOString(),
  lastUsedAt: row.last_used_at?.toISOString() ?? null,
  revokedAt: row.revoked_at?.toISOString() ?? null,
});

/** Only this hash is stored; the key itself is shown once, at creation. */
export const hashApiKey = (key: string) => createHash('sha256').update(key).digest('hex');

export async function createApiKey(
  db: Knex,
  input: { name: string; scopes: Scope[] },
): Promise<{ key: string; info: ApiKeyInfo }> {
  const key = `sf_${randomBytes(32).toString('base64url')}`;
  const [row] = await db<ApiKeyRow>('api_keys')
    .insert({
      name: input.name,
      scopes: input.scopes,
      key_hash: hashApiKey(key),
      key_prefix: key.slice(0, 10),
    } as never)
    .returning('*');
  return { key, info: toInfo(row!) };
}

export async function listApiKeys(db: Knex): Promise<ApiKeyInfo[]> {
  const rows = await db<ApiKeyRow>('api_keys').orderBy('created_at');
  return rows.map(toInfo);
}

export async function countActiveApiKeys(db: Knex): Promise<number> {
  const [row] = await db('api_keys').whereNull('revoked_at').count<{ count: string }[]>('* as count');
  return Number(row?.count ?? 0);
}

/** Revokes the active key with this name, or the key with this id. Returns the revoked keys. */
export async function revokeApiKey(db: Knex, nameOrId: string): Promise<ApiKeyInfo[]> {
  const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(nameOrId);
  const rows = await db<ApiKeyRow>('api_keys')
    .whereNull('revoked_at')
    .where((w) => (isUuid ? w.where('id', nameOrId) : w.where('name', nameOrId)))
    .update({ revoked_at: db.fn.now() } as never)
    .returning('*');
  return rows.map(toInfo);
}

export async function findActiveApiKey(
  db: Knex,
  key: string,
): Promise<{ id: string; name: string; scopes: Scope[] } | undefined> {
  return db('api_keys')
    .where({ key_hash: hashApiKey(key) })
    .whereNull('revoked_at')
    .first('id', 'name', 'scopes');
}

export async function touchApiKey(db: Knex, id: string): Promise<void> {
  await db('api_keys').where({ id }).update({ last_used_at: db.fn.now() });
}
