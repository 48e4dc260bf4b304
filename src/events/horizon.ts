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
 * The proof: read the sequence's last value L, then take a fresh snapshot S. Every transaction that
 * drew a seq <= L had its transaction id before L was read (appendEvent takes the id first), so
 * that id is below S's xmax. Once the oldest running transaction of a later snapshot is at or past
 * S's xmax, every one of those writers has ended: all seqs <= L are final.
 *
 * Cost: a long write transaction anywhere on the server holds the horizon back (never loses an
 * event) until it ends.
 */
export async function proveHorizon(db: Knex, maxWaitMs: number, known = 0): Promise<number | undefined> {
  const last = await lastDrawnSeq(db);
  // Nothing drawn since the known horizon: it still holds.
  if (last <= known) return known;
  // A second statement: its snapshot is taken after `last` was read.
  const { rows: snapshotRows } = await db.raw<{ rows: { xmin: string; xmax: string }[] }>(
    `select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax from pg_current_snapshot() as s`,
  );
  const { xmin, xmax } = snapshotRows[0]!;
  if (BigInt(xmin) >= BigInt(xmax)) return last;
  const deadline = Date.now() + maxWaitMs;
  let pauseMs = 1;
  for (;;) {
    const { rows } = await db.raw<{ rows: { done: boolean }[] }>(
      `select pg_snapshot_xmin(pg_current_snapshot()) >= ?::xid8 as done`,
      [xmax],
    );
    if (rows[0]!.done) return last;
    if (Date.now() >= deadline) return undefined;
    await sleep(pauseMs);
    pauseMs = Math.min(pauseMs * 2, 20);
  }
}

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
