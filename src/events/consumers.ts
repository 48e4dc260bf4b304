import type { Knex } from 'knex';
import { ConsumerNotOwnedError } from '../errors/consumer-not-owned-error.js';
import { TooManyConsumersError } from '../errors/too-many-consumers-error.js';

/** A named reader of the log (the PMS, a replica of it) and how far it has acknowledged. */
export interface ConsumerStatus {
  consumer: string;
  ackedSeq: number;
  headSeq: number;
  /** Events after ackedSeq up to headSeq (the count, not the seq difference: seqs have gaps), counted up to `maxCountedLag`. */
  lag: number;
  /** True when the lag is at least `maxCountedLag` (counting stopped there). */
  lagCapped: boolean;
  lastAckAt: string | null;
  /** The name of the API key the consumer belongs to (null: none, a consumer from before owners). */
  owner: string | null;
}

/**
 * The key acting on consumers. A consumer belongs to the key that created it (its first ack): only
 * that key moves it, resumes from it and sees it in sync/status. An `admin` key acts on and sees
 * every consumer without taking it over. A consumer without an active owner (its key revoked or
 * expired, or one from before owners) is taken over by the next key that acks it: a rotated key
 * keeps the PMS's consumers.
 */
export interface ConsumerOwner {
  apiKeyId: string;
  /** CONSUMERS_PER_KEY: how many consumers the key may own. */
  maxConsumers: number;
  admin: boolean;
}

interface ConsumerRow {
  name: string;
  acked_seq: number;
  last_ack_at: Date | null;
}

/** True (in SQL) when the consumer row `c` has no active owner: none, or a revoked or expired key. */
const unownedSql = (c: string) => `(${c}.api_key_id is null or not exists (
    select 1 from api_keys k where k.id = ${c}.api_key_id
      and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())))`;

/** Who may act on a consumer: undefined when it does not exist yet. */
async function standing(
  db: Knex,
  consumer: string,
  owner: ConsumerOwner,
): Promise<{ mine: boolean; unowned: boolean } | undefined> {
  const { rows } = await db.raw<{ rows: { mine: boolean; unowned: boolean }[] }>(
    `select c.api_key_id is not distinct from ?::uuid as mine, ${unownedSql('c')} as unowned
     from event_consumers c where c.name = ?`,
    [owner.apiKeyId, consumer],
  );
  return rows[0];
}

/**
 * Records that `consumer` has processed every event up to `seq`. Positions only move forward: an
 * older ack (a late duplicate) leaves the position as it is. A consumer another active key owns
 * is refused (ConsumerNotOwnedError) unless `owner` is an admin key.
 */
export async function ackConsumer(
  db: Knex,
  input: { consumer: string; seq: number; owner: ConsumerOwner },
): Promise<{ consumer: string; ackedSeq: number; lastAckAt: string }> {
  const { owner } = input;
  const current = await standing(db, input.consumer, owner);
  if (current && !current.mine && !current.unowned && !owner.admin) {
    throw new ConsumerNotOwnedError(input.consumer);
  }
  // Creating a consumer, or taking over one without an active owner, counts against the key's cap.
  if (!current || (current.unowned && !current.mine && !owner.admin)) {
    const [row] = await db('event_consumers')
      .where({ api_key_id: owner.apiKeyId })
      .count<{ n: number }[]>('* as n');
    if (Number(row?.n ?? 0) >= owner.maxConsumers) throw new TooManyConsumersError(owner.maxConsumers);
  }
  // The same rule again in the statement, against a concurrent change of owner.
  const { rows } = await db.raw<{ rows: ConsumerRow[] }>(
    `insert into event_consumers (name, acked_seq, last_ack_at, api_key_id) values (?, ?, now(), ?)
     on conflict (name) do update
       set acked_seq = greatest(event_consumers.acked_seq, excluded.acked_seq), last_ack_at = now(),
           api_key_id = case when ${unownedSql('event_consumers')} and not ?::boolean
                             then excluded.api_key_id else event_consumers.api_key_id end
       where event_consumers.api_key_id is not distinct from excluded.api_key_id
          or ?::boolean or ${unownedSql('event_consumers')}
     returning name, acked_seq, last_ack_at`,
    [input.consumer, input.seq, owner.apiKeyId, owner.admin, owner.admin],
  );
  const row = rows[0];
  if (!row) throw new ConsumerNotOwnedError(input.consumer);
  return { consumer: row.name, ackedSeq: row.acked_seq, lastAckAt: row.last_ack_at!.toISOString() };
}

/** The lag of a consumer is counted up to this many events: the count scans that many rows at most. */
export const maxCountedLag = 100_000;
/** sync/status lists at most this many consumers. */
export const maxListedConsumers = 1000;

/** Where `consumer` is acked up to, for `owner` to resume after; ConsumerNotOwnedError when it may not. */
export async function getConsumerPosition(
  db: Knex,
  consumer: string,
  owner: ConsumerOwner,
): Promise<number | undefined> {
  const current = await standing(db, consumer, owner);
  if (current && !current.mine && !current.unowned && !owner.admin) throw new ConsumerNotOwnedError(consumer);
  const row = await db<ConsumerRow>('event_consumers').where({ name: consumer }).first('acked_seq');
  return row?.acked_seq;
}

/**
 * The consumers `viewer` may see (its own; every one for an admin key), each against `headSeq` (a
 * stable horizon).
 */
export async function consumerStatuses(
  db: Knex,
  headSeq: number,
  viewer: Pick<ConsumerOwner, 'apiKeyId' | 'admin'>,
): Promise<ConsumerStatus[]> {
  const { rows } = await db.raw<{ rows: (ConsumerRow & { lag: number; owner: string | null })[] }>(
    `select c.name, c.acked_seq, c.last_ack_at, k.name as owner,
            (select count(*) from (
               select 1 from events e where e.seq > c.acked_seq and e.seq <= ? limit ?
             ) counted)::bigint as lag
     from event_consumers c left join api_keys k on k.id = c.api_key_id
     where ?::boolean or c.api_key_id = ?::uuid
     order by c.name
     limit ?`,
    [headSeq, maxCountedLag, viewer.admin, viewer.apiKeyId, maxListedConsumers],
  );
  return rows.map((row) => ({
    consumer: row.name,
    ackedSeq: row.acked_seq,
    headSeq,
    lag: row.lag,
    lagCapped: row.lag >= maxCountedLag,
    lastAckAt: row.last_ack_at?.toISOString() ?? null,
    owner: row.owner,
  }));
}
