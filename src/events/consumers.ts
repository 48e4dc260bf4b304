import type { Knex } from 'knex';

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
}

interface ConsumerRow {
  name: string;
  acked_seq: number;
  last_ack_at: Date | null;
}

/**
 * Records that `consumer` has processed every event up to `seq`. Positions only move forward: an
 * older ack (a late duplicate) leaves the position as it is.
 */
export async function ackConsumer(
  db: Knex,
  input: { consumer: string; seq: number; owner?: { apiKeyId: string; maxConsumers: number } },
): Promise<{ consumer: string; ackedSeq: number; lastAckAt: string }> {
  const owner = input.owner;
  if (owner && !(await db('event_consumers').where({ name: input.consumer }).first('name'))) {
    const [row] = await db('event_consumers')
      .where({ api_key_id: owner.apiKeyId })
      .count<{ n: number }[]>('* as n');
    if (Number(row?.n ?? 0) >= owner.maxConsumers) throw new TooManyConsumersError(owner.maxConsumers);
  }
  const { rows } = await db.raw<{ rows: ConsumerRow[] }>(
    `insert into event_consumers (name, acked_seq, last_ack_at, api_key_id) values (?, ?, now(), ?)
     on conflict (name) do update
       set acked_seq = greatest(event_consumers.acked_seq, excluded.acked_seq), last_ack_at = now()
     returning name, acked_seq, last_ack_at`,
    [input.consumer, input.seq, owner?.apiKeyId ?? null],
  );
  const row = rows[0]!;
  return { consumer: row.name, ackedSeq: row.acked_seq, lastAckAt: row.last_ack_at!.toISOString() };
}

/** A key tried to create one consumer more than CONSUMERS_PER_KEY allows. */
export class TooManyConsumersError extends Error {
  constructor(readonly limit: number) {
    super(`This API key already created ${limit} consumers (CONSUMERS_PER_KEY); reuse one of them`);
    this.name = 'TooManyConsumersError';
  }
}

/** The lag of a consumer is counted up to this many events: the count scans that many rows at most. */
export const maxCountedLag = 100_000;
/** sync/status lists at most this many consumers. */
export const maxListedConsumers = 1000;

export async function getConsumerPosition(db: Knex, consumer: string): Promise<number | undefined> {
  const row = await db<ConsumerRow>('event_consumers').where({ name: consumer }).first('acked_seq');
  return row?.acked_seq;
}

/** Every known consumer's position against `headSeq` (a stable horizon). */
export async function consumerStatuses(db: Knex, headSeq: number): Promise<ConsumerStatus[]> {
  const { rows } = await db.raw<{ rows: (ConsumerRow & { lag: number })[] }>(
    `select c.name, c.acked_seq, c.last_ack_at,
            (select count(*) from (
               select 1 from events e where e.seq > c.acked_seq and e.seq <= ? limit ?
             ) counted)::bigint as lag
     from event_consumers c
     order by c.name
     limit ?`,
    [headSeq, maxCountedLag, maxListedConsumers],
  );
  return rows.map((row) => ({
    consumer: row.name,
    ackedSeq: row.acked_seq,
    headSeq,
    lag: row.lag,
    lagCapped: row.lag >= maxCountedLag,
    lastAckAt: row.last_ack_at?.toISOString() ?? null,
  }));
}
