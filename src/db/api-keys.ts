import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * `pms`: the PMS's routes; `admin`: every route except Bull Board's write actions; `ops`: Bull
 * Board's write actions (retry, clean, pause, promote, obliterate), given on purpose, never implied;
 * `monitor`: read-only operations (`/metrics`, `GET /api/ops/*`) for a Prometheus scraper or a
 * dashboard, implied by `admin`. The table of every route and its scope: docs/security.md.
 */
export const scopes = ['pms', 'admin', 'ops', 'monitor'] as const;
export type Scope = (typeof scopes)[number];

export interface ApiKeyInfo {
  id: string;
  name: string;
  keyPrefix: string;
  scopes: Scope[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** Past this instant the key is refused, like a revoked one; null: never. */
  expiresAt: string | null;
}

interface ApiKeyRow {
  id: string;
  name: string;
  key_prefix: string;
  scopes: Scope[];
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
  expires_at: Date | null;
}

const toInfo = (row: ApiKeyRow): ApiKeyInfo => ({
  id: row.id,
  name: row.name,
  keyPrefix: row.key_prefix,
  scopes: row.scopes,
  createdAt: row.created_at.toISOString(),
  lastUsedAt: row.last_used_at?.toISOString() ?? null,
  revokedAt: row.revoked_at?.toISOString() ?? null,
  expiresAt: row.expires_at?.toISOString() ?? null,
});

/** Only this hash is stored; the key itself is shown once, at creation. */
export const hashApiKey = (key: string) => createHash('sha256').update(key).digest('hex');

export async function createApiKey(
  db: Knex,
  input: { name: string; scopes: Scope[]; expiresAt?: Date },
): Promise<{ key: string; info: ApiKeyInfo }> {
  const key = `sf_${randomBytes(32).toString('base64url')}`;
  const [row] = await db<ApiKeyRow>('api_keys')
    .insert({
      name: input.name,
      scopes: input.scopes,
      key_hash: hashApiKey(key),
      key_prefix: key.slice(0, 10),
      expires_at: input.expiresAt ?? null,
    } as never)
    .returning('*');
  return { key, info: toInfo(row!) };
}

export async function listApiKeys(db: Knex): Promise<ApiKeyInfo[]> {
  const rows = await db<ApiKeyRow>('api_keys').orderBy('created_at');
  return rows.map(toInfo);
}

/** Keys that are neither revoked nor expired (by the database's clock). */
const active = (query: Knex.QueryBuilder, db: Knex) =>
  query
    .whereNull('revoked_at')
    .where((w) => w.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()));

export async function countActiveApiKeys(db: Knex): Promise<number> {
  const [row] = await active(db('api_keys'), db).count<{ count: string }[]>('* as count');
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
): Promise<{ id: string; name: string; scopes: Scope[]; expires_at: Date | null } | undefined> {
  return active(db('api_keys').where({ key_hash: hashApiKey(key) }), db).first(
    'id',
    'name',
    'scopes',
    'expires_at',
  );
}

/** The scopes of those of these keys that are still active (not revoked, not expired), by id. */
export async function findActiveKeyScopes(db: Knex, ids: readonly string[]): Promise<Map<string, Scope[]>> {
  if (ids.length === 0) return new Map();
  const rows: { id: string; scopes: Scope[] }[] = await active(db('api_keys').whereIn('id', ids), db).select(
    'id',
    'scopes',
  );
  return new Map(rows.map((row) => [row.id, row.scopes]));
}

export async function touchApiKey(db: Knex, id: string): Promise<void> {
  await db('api_keys').where({ id }).update({ last_used_at: db.fn.now() });
}
