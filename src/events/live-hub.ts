import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import type { Logger } from '../log.js';
import type { LogEvent } from '../schemas/events.js';
import { matchesType } from '../schemas/type-patterns.js';
import { readEventPage } from './event-log.js';
import type { HorizonTracker } from './horizon.js';

/**
 * Live fan-out of the event log inside one web process. The log is the source of truth: the hub
 * reads it below the stable horizon and hands each page to every live subscription. Wake-ups
 * (job-finished signals over Redis, local writes) only shorten the wait; a poll timer covers a
 * lost one. Every web process runs its own hub, so each streams every event.
 *
 * A subscription starts by catching up from the log on its own; it joins the shared pages once
 * its cursor reaches the hub's. When its client cannot keep up it pauses (nothing is buffered for
 * it) and catches up from the log again when the client drains. Cursors only move forward past
 * events sent or filtered out, so there is no gap and no duplicate.
 */
export interface LiveHub {
  subscribe(options: SubscribeOptions): Subscription;
  /** Something may have been written: look now instead of at the next poll. */
  wake(): void;
  /** The seq every live subscription has been brought to. */
  position(): number;
  /** Open subscriptions: one per connected SSE or WebSocket stream. */
  size(): number;
  /** Ends every subscription (their `onEnd` runs) and stops polling. */
  close(): Promise<void>;
}

export interface SubscribeOptions {
  /** Start after this seq; undefined: from the current horizon (only new events). */
  after: number | undefined;
  types?: readonly string[];
  /** Hands one event to the client; false means "buffer full": the subscription pauses. */
  send(event: LogEvent): boolean;
  /** The subscription could not continue (a database error) or the hub closed. */
  onEnd(reason: 'error' | 'closed', error?: unknown): void;
}

export interface Subscription {
  /** The last seq sent or skipped: what a client would resume after. */
  cursor(): number;
  /** The client drained its buffer: catch up and go on. */
  resume(): void;
  close(): void;
}

interface SubscriptionState {
  cursor: number;
  mode: 'starting' | 'catching-up' | 'live' | 'paused' | 'closed';
  options: SubscribeOptions;
}

const pageSize = 500;
const proofWaitMs = 2000;

export function createLiveHub(deps: {
  db: Knex;
  horizon: HorizonTracker;
  log: Logger;
  pollMs: number;
}): LiveHub {
  const { db, horizon, log } = deps;
  const subscriptions = new Set<SubscriptionState>();
  let dispatched: number | undefined;
  let loop: Promise<void> | undefined;
  let wakeUp: (() => void) | undefined;
  let woken = false;
  let closed = false;

  function wake() {
    woken = true;
    wakeUp?.();
  }

  function waitForWake(ms: number): Promise<void> {
    if (woken) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });
  }

  function deliver(sub: SubscriptionState, events: LogEvent[], pageEnd: number): void {
    for (const event of events) {
      if (sub.mode !== 'live') return;
      if (event.seq <= sub.cursor) continue;
      if (sub.options.types && !matchesType(sub.options.types, event.type)) {
        sub.cursor = event.seq;
        continue;
      }
      const more = sub.options.send(event);
      sub.cursor = event.seq;
      if (!more) {
        sub.mode = 'paused';
        return;
      }
    }
    if (sub.mode === 'live' && pageEnd > sub.cursor) sub.cursor = pageEnd;
  }

  async function catchUp(sub: SubscriptionState): Promise<void> {
    sub.mode = 'catching-up';
    try {
      for (;;) {
        if (sub.mode !== 'catching-up') return;
        const target = dispatched ?? horizon.current();
        if (sub.cursor >= target && dispatched !== undefined) {
          // Synchronously, so no shared page can be dispatched in between.
          sub.mode = 'live';
          return;
        }
        if (sub.cursor >= target) {
          // The hub has not proven its first horizon yet; it will bring this subscription along.
          await sleep(20);
          continue;
        }
        const page = await readEventPage(db, {
          after: sub.cursor,
          limit: pageSize,
          horizon: target,
          types: sub.options.types,
        });
        for (const event of page.items) {
          if (sub.mode !== 'catching-up') return;
          const more = sub.options.send(event);
          sub.cursor = event.seq;
          if (!more) {
            sub.mode = 'paused';
            return;
          }
        }
        if (sub.mode === 'catching-up') sub.cursor = Math.max(sub.cursor, page.nextAfter);
      }
    } catch (error) {
      if ((sub.mode as SubscriptionState['mode']) === 'closed') return;
      sub.mode = 'closed';
      subscriptions.delete(sub);
      sub.options.onEnd('error', error);
    }
  }

  async function run(): Promise<void> {
    while (!closed && subscriptions.size > 0) {
      woken = false;
      try {
        const proven = await horizon.refresh(proofWaitMs);
        if (dispatched === undefined) dispatched = proven;
        while (!closed && dispatched < proven) {
          const page = await readEventPage(db, { after: dispatched, limit: pageSize * 2, horizon: proven });
          for (const sub of subscriptions) deliver(sub, page.items, page.nextAfter);
          dispatched = page.nextAfter;
        }
      } catch (error) {
        log.warn({ err: error }, 'event stream could not read the log; retrying');
      }
      if (!closed && subscriptions.size > 0) await waitForWake(deps.pollMs);
    }
    // Idle: the next first subscriber starts from the horizon of its time, not from here.
    loop = undefined;
    dispatched = undefined;
  }

  function ensureRunning() {
    if (!loop && !closed) loop = run();
  }

  return {
    subscribe(options) {
      const sub: SubscriptionState = { cursor: options.after ?? 0, mode: 'starting', options };
      if (closed) {
        queueMicrotask(() => options.onEnd('closed'));
        return { cursor: () => sub.cursor, resume() {}, close() {} };
      }
      subscriptions.add(sub);
      ensureRunning();
      wake();
      const start = async () => {
        if (options.after === undefined) {
          // Only new events: start at a horizon that covers everything committed before now.
          try {
            sub.cursor = await horizon.refresh(proofWaitMs);
          } catch (error) {
            sub.mode = 'closed';
            subscriptions.delete(sub);
            options.onEnd('error', error);
            return;
          }
        }
        if (sub.mode === 'starting') await catchUp(sub);
      };
      void start();
      return {
        cursor: () => sub.cursor,
        resume() {
          if (sub.mode === 'paused') void catchUp(sub);
        },
        close() {
          sub.mode = 'closed';
          subscriptions.delete(sub);
        },
      };
    },
    wake,
    position: () => dispatched ?? horizon.current(),
    size: () => subscriptions.size,
    async close() {
      closed = true;
      wake();
      for (const sub of subscriptions) {
        sub.mode = 'closed';
        sub.options.onEnd('closed');
      }
      subscriptions.clear();
      await loop;
    },
  };
}
