import type { Knex } from 'knex';

/** A named reader of the log (the PMS, a replica of it) and how far it has acknowledged. */
export interface ConsumerStatus {
  consumer: string;
  ackedSeq: number;
  headSeq: number;
  /** Events after ackedSeq up to headSeq (the count, not the seq difference: seqs have gaps). */
  lag: number;
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
  input: { consumer: string; seq: number },
): Promise<{ consumer: string; ackedSeq: number; lastAckAt: string }> {
  const { rows } = await db.raw<{ rows: ConsumerRow[] }>(
    `insert into event_consumers (name, acked_seq, last_ack_at) values (?, ?, now())
     on conflict (name) do update
       set acked_seq = greatest(event_consumers.acked_seq, excluded.acked_seq), last_ack_at = now()
     returning name, acked_seq, last_ack_at`,
    [input.consumer, input.seq],
  );
  const row = rows[0]!;
  return { consumer: row.name, ackedSeq: row.acked_seq, lastAckAt: row.last_ack_at!.toISOString() };
}

export async function getConsumerPosition(db: Knex, consumer: string): Promise<number | undefined> {
  const row = await db<ConsumerRow>('event_consumers').where({ name: consumer }).first('acked_seq');
  return row?.acked_seq;
}

/** Every known consumer's position against `headSeq` (a stable horizon). */
export async function consumerStatuses(db: Knex, headSeq: number): Promise<ConsumerStatus[]> {
  const { rows } = await db.raw<{ rows: (ConsumerRow & { lag: number })[] }>(
    `select c.name, c.acked_seq, c.last_ack_at,
            (select count(*) from events e where e.seq > c.acked_seq and e.seq <= ?)::bigint as lag
     from event_consumers c
     order by c.name`,
    [headSeq],
  );
  return rows.map((row) => ({
    consumer: row.name,
    ackedSeq: row.acked_seq,
    headSeq,
    lag: row.lag,
    lastAckAt: row.last_ack_at?.toISOString() ?? null,
  }));
}
