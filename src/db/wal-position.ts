import type { Knex } from 'knex';
import type { Logger } from '../log.js';

/**
 * Positions in PostgreSQL's write-ahead log (LSNs such as `16/B374D848`): how far the primary has
 * written and how far a streaming replica has replayed. They order every commit, so "the replica
 * has replayed up to the position read after my commit" means "the replica shows my commit".
 */

const lsnPattern = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

/** Whether `text` is a WAL position as Postgres writes it (`pg_lsn` as text). */
export const isLsn = (text: string) => lsnPattern.test(text);

/** `16/B374D848` → a number that compares as the positions do. */
export function parseLsn(text: string): bigint {
  if (!isLsn(text)) throw new RangeError(`not a WAL position: ${text}`);
  const [high, low] = text.split('/') as [string, string];
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

/**
 * The primary's WAL position now: at or past the commit record of every transaction that committed
 * before this call. The flush position: a commit returns once its record is flushed, and a replica
 * is sent everything up to it, so it can always catch up (the insert position may point at a record
 * no commit has flushed yet, which an idle primary never sends). With `synchronous_commit = off` a
 * commit returns before its record is flushed: then the insert position, which is past it.
 */
export async function readWalPosition(db: Knex): Promise<string> {
  const { rows } = await db.raw<{ rows: { lsn: string }[] }>(
    `select (case when current_setting('synchronous_commit') = 'off' then pg_current_wal_insert_lsn()
                  else pg_current_wal_flush_lsn() end)::text as lsn`,
  );
  return rows[0]!.lsn;
}

export interface ReplicaPosition {
  /** Replayed up to here. A server not in recovery (a primary, a promoted replica) holds everything. */
  replayed: bigint;
  /**
   * The answer may miss the writes committed in the last `lagMs` ms before `readAt`: the age of
   * the last transaction replayed (an upper bound: on an idle primary it grows while nothing is
   * missing). Undefined until the replica has replayed a transaction: its staleness is unknown.
   */
  lagMs: number | undefined;
  /** When the position was asked for (Date.now()). */
  readAt: number;
}

const everything = (1n << 64n) - 1n;

export async function readReplicaPosition(db: Knex): Promise<ReplicaPosition> {
  const readAt = Date.now();
  const { rows } = await db.raw<{
    rows: { recovering: boolean; replayed: string | null; lag_ms: number | null }[];
  }>(
    `select pg_is_in_recovery() as recovering, pg_last_wal_replay_lsn()::text as replayed,
            (extract(epoch from clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 as lag_ms`,
  );
  const row = rows[0]!;
  if (!row.recovering) return { replayed: everything, lagMs: 0, readAt };
  return {
    replayed: row.replayed ? parseLsn(row.replayed) : 0n,
    // The primary's clock stamped the commit: a replica clock behind it must not make lag negative.
    lagMs: row.lag_ms === null ? undefined : Math.max(0, Math.ceil(row.lag_ms)),
    readAt,
  };
}

export interface ReplicaTracker {
  /**
   * The replica's position, from a query started now or one in flight (concurrent callers share
   * it). Undefined when it does not answer within the tracker's wait, or failed or answered late in
   * the last second.
   */
  position(): Promise<ReplicaPosition | undefined>;
  /** Waits up to the tracker's wait for the replica to replay up to `lsn`: its position then, else undefined. */
  reached(lsn: string): Promise<ReplicaPosition | undefined>;
  /** A read on the replica failed as if it were away (its caller logs why): leave it alone for a while. */
  failed(): void;
}

/** After a failure the replica is not asked again for this long: a dead replica costs no request a wait. */
const restMs = 1000;
/** How often a read waiting for the replica to catch up asks again. */
const pollMs = 10;

/** `waitMs` (REPLICA_WAIT_MS): how long a read waits for the replica's position, or for it to catch up. */
export function createReplicaTracker(db: Knex, log: Logger, waitMs: number): ReplicaTracker {
  let running: { query: Promise<ReplicaPosition>; startedAt: number } | undefined;
  let restUntil = 0;

  const rest = () => {
    restUntil = Date.now() + restMs;
  };
  const within = async (budgetMs: number): Promise<ReplicaPosition | undefined> => {
    if (Date.now() < restUntil) return undefined;
    running ??= {
      query: readReplicaPosition(db).finally(() => {
        running = undefined;
      }),
      startedAt: Date.now(),
    };
    const { query, startedAt } = running;
    let timer: NodeJS.Timeout | undefined;
    const waitingSince = Date.now();
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), budgetMs);
    });
    try {
      const at = await Promise.race([query, timeout]);
      if (at !== 'timeout') return at;
      // A query unanswered for a whole wait (a hung or overloaded replica): the next second's reads
      // do not wait for it. A catching-up read's last, short poll running out is not that. Judged
      // by the budget the timer ran, not by the clock afterwards: libuv starts a timer from the
      // loop's cached time, so on a busy machine it fires before Date.now() has moved a whole wait.
      if (waitingSince - startedAt + budgetMs >= waitMs) rest();
      return undefined;
    } catch (error) {
      // Once per rest, not per waiting read: they all shared this query.
      if (Date.now() >= restUntil)
        log.warn({ err: error }, 'the Postgres replica did not tell its position: reads go to the primary');
      rest();
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    position: () => within(waitMs),
    async reached(lsn) {
      const wanted = parseLsn(lsn);
      const deadline = Date.now() + waitMs;
      for (;;) {
        const at = await within(Math.max(0, deadline - Date.now()));
        if (at && at.replayed >= wanted) return at;
        const left = deadline - Date.now();
        if (!at || left <= 0) return undefined;
        await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, left)));
      }
    },
    failed: rest,
  };
}
