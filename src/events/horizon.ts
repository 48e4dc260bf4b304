import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';

/**
 * The stable horizon: the highest seq H such that every event with seq <= H is final, that is
 * committed (and visible to every snapshot taken from now on) or rolled back for good. Readers
 * serve only `seq <= H`, so they can page by seq and never skip an event.
 *
 * Why: a seq is drawn at insert but becomes visible at commit, so seq 10 can commit before seq 9.
 * A reader that served 10 and moved its cursor past it would never see 9.
 *
 * The proof: read the sequence's last value L, then the transactions that hold a write lock on
 * `events` in this database. A transaction takes that lock before its insert draws a seq and keeps
 * it until it ends, so every writer that drew a seq <= L and has not ended is in that set. Once
 * all of them have ended, every seq <= L is final. It is the oldest in-flight transaction rule
 * (pg_snapshot_xmin), narrowed to the transactions that write events: long transactions elsewhere
 * on the server (other tables, other databases) do not hold the feed back; a long transaction
 * that wrote an event does, until it ends, and nothing is ever skipped.
 */
export async function proveHorizon(db: Knex, maxWaitMs: number, known = 0): Promise<number | undefined> {
  const last = await lastDrawnSeq(db);
  // Nothing drawn since the known horizon: it still holds.
  if (last <= known) return known;
  // A second statement: the lock holders are read after `last`.
  const { rows } = await db.raw<{ rows: { writers: string[] }[] }>(
    `select coalesce(array_agg(distinct virtualtransaction), '{}') as writers ${eventWriters}`,
  );
  const writers = rows[0]!.writers;
  const deadline = Date.now() + maxWaitMs;
  let pauseMs = 1;
  while (writers.length > 0) {
    const { rows: left } = await db.raw<{ rows: { running: number }[] }>(
      `select count(*)::int as running ${eventWriters} and virtualtransaction = any(?)`,
      [writers],
    );
    if (left[0]!.running === 0) break;
    if (Date.now() >= deadline) return undefined;
    await sleep(pauseMs);
    pauseMs = Math.min(pauseMs * 2, 20);
  }
  return last;
}

/** Transactions of this database holding the lock every insert into `events` takes. */
const eventWriters = `from pg_locks
  where locktype = 'relation' and mode = 'RowExclusiveLock' and granted
    and relation = 'events'::regclass
    and database = (select oid from pg_database where datname = current_database())`;

/** The last seq drawn from the sequence (committed or not); 0 before the first event. */
export async function lastDrawnSeq(db: Knex): Promise<number> {
  const { rows } = await db.raw<{ rows: { last: number }[] }>(
    `select coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass), 0) as last`,
  );
  return rows[0]!.last;
}

export interface HorizonTracker {
  /** The last proven horizon, without a query. */
  current(): number;
  /**
   * Proves a newer horizon, covering every event committed before this call, and returns the best
   * horizon known once the proof ends or `maxWaitMs` passes (then the previous one, still safe).
   * Concurrent callers share proofs.
   */
  refresh(maxWaitMs: number): Promise<number>;
}

/** Longest one proof waits for in-flight writers before it gives up (the next refresh starts anew). */
const proofLimitMs = 5000;

export function createHorizonTracker(db: Knex): HorizonTracker {
  let horizon = 0;
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;

  const prove = async () => {
    const proven = await proveHorizon(db, proofLimitMs, horizon);
    if (proven !== undefined && proven > horizon) horizon = proven;
  };
  // A proof already running may have read the sequence before the caller's events committed, so
  // callers arriving meanwhile share one proof that starts after it.
  const start = (): Promise<void> => {
    if (!running) {
      running = prove().finally(() => {
        running = undefined;
      });
      return running;
    }
    queued ??= running
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return start();
      });
    return queued;
  };

  return {
    current: () => horizon,
    async refresh(maxWaitMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, maxWaitMs);
      });
      try {
        await Promise.race([start(), timeout]);
      } finally {
        clearTimeout(timer);
      }
      return horizon;
    },
  };
}

const trackers = new WeakMap<Knex, HorizonTracker>();

/** One horizon tracker per connection pool (per process), shared by the relays that read the log. */
export function horizonFor(db: Knex): HorizonTracker {
  let tracker = trackers.get(db);
  if (!tracker) {
    tracker = createHorizonTracker(db);
    trackers.set(db, tracker);
  }
  return tracker;
}
