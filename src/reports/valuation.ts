/**
 * Moving weighted average valuation per sku × location, as pure rules (docs/reports.md#valuation).
 * One home: the compaction job, the reports (folding movements not compacted yet, replaying a
 * month for `?at=`), the benchmark and the tests' naive replay all call `createReplay`.
 *
 * Rules:
 * - a unit received at cost c: new average = (value before + units in × c) / (units before + units in);
 * - a movement in without a cost (a return, a found or counted unit, a receipt without unitCost)
 *   takes the current average; a transfer's units arrive at the cost they left the other location at;
 * - units out leave at the current average; the last unit out takes all the value left, so zero
 *   units is zero value (no 0.01 left over);
 * - units going below zero are valued at the last known cost; the next units in settle them at
 *   their own cost: every unit still held, or still owed, is then at that cost (2 out with none in
 *   stock, then 20 @ 333: 18 units at 333, not a skewed average);
 * - averages keep full double precision (15+ significant digits, far beyond 6 decimals); money is
 *   rounded only when shown (`shownMoney`);
 * - a movement's value is the change it makes to its level's value, so the values of the movements
 *   add up to the reported value.
 */

/** The movement kinds that do not change on_hand (they move `reserved` only). */
const reservedOnly = new Set(['reserve', 'release']);

export interface ValueState {
  units: number;
  value: number;
  /** The last known unit cost: the average while units were held, or the last cost received. */
  lastCost: number | null;
}

export interface ValuedMovement {
  id: number;
  sku: string;
  location: string;
  kind: string;
  delta: number;
  unitCost: number | null;
  jobId: string | null;
  createdAt: Date;
}

export const emptyState = (): ValueState => ({ units: 0, value: 0, lastCost: null });

/** The cost a unit leaves (or arrives without a cost) at now: the average, else the last known cost. */
export const currentCost = (state: ValueState): number =>
  state.units > 0 ? state.value / state.units : (state.lastCost ?? 0);

/**
 * Applies one on-hand change to a level's state; returns the new state and the movement's value
 * (the change in the level's value). `cost` is the unit cost of units coming in (null: the current
 * average). The input state is not changed.
 */
export function applyToState(
  state: ValueState,
  delta: number,
  cost: number | null,
): { state: ValueState; value: number } {
  if (delta === 0) return { state, value: 0 };
  const { units, value } = state;
  const after = units + delta;
  let next: ValueState;
  if (delta > 0) {
    const c = cost ?? currentCost(state);
    if (units < 0) {
      // The units owed are settled at this cost; everything held or still owed is now at c.
      next = { units: after, value: after * c, lastCost: c };
    } else {
      const v = value + delta * c;
      next = { units: after, value: v, lastCost: after > 0 ? v / after : c };
    }
  } else if (units > 0 && after >= 0) {
    // The last unit out takes what is left: no rounding residue at zero.
    const v = after === 0 ? 0 : value + delta * (value / units);
    next = { units: after, value: v, lastCost: value / units };
  } else {
    // Below zero: what is held leaves at the average, the rest is owed at the last known cost.
    const c = currentCost(state);
    next = { units: after, value: after * c, lastCost: c };
  }
  // -0 (units below zero times a zero cost) is 0: Postgres and JSON would not keep the sign.
  if (next.value === 0) next.value = 0;
  return { state: next, value: next.value - value };
}

export const levelKey = (sku: string, location: string) => `${sku}\u0000${location}`;

/**
 * A replay of movements over level states, in ledger time order (created_at, then id), which the
 * caller guarantees. Keeps transfer costs: a transfer_in arrives at the cost its transfer_out left
 * at (the out leg of the same sku, job and instant, first in first out).
 */
export function createReplay(states: Map<string, ValueState> = new Map()) {
  const inTransit = new Map<string, number[]>();
  const transitKey = (m: ValuedMovement) => `${m.sku}\u0000${m.jobId ?? ''}\u0000${m.createdAt.getTime()}`;
  return {
    states,
    state(sku: string, location: string): ValueState {
      return states.get(levelKey(sku, location)) ?? emptyState();
    },
    /** Applies a movement; returns its value (0 for reserve/release). */
    apply(m: ValuedMovement): number {
      if (reservedOnly.has(m.kind)) return 0;
      const key = levelKey(m.sku, m.location);
      const before = states.get(key) ?? emptyState();
      let cost = m.unitCost;
      if (m.kind === 'transfer_in' && cost === null) cost = inTransit.get(transitKey(m))?.shift() ?? null;
      if (m.kind === 'transfer_out') {
        const queue = inTransit.get(transitKey(m)) ?? [];
        queue.push(currentCost(before));
        inTransit.set(transitKey(m), queue);
      }
      const { state, value } = applyToState(before, m.delta, cost);
      states.set(key, state);
      return value;
    },
  };
}

/** Ledger time order: created_at, then id. */
export const byLedgerTime = (a: ValuedMovement, b: ValuedMovement) =>
  a.createdAt.getTime() - b.createdAt.getTime() || a.id - b.id;

/** Money as shown: whole minor units, half away from zero (never `-0`). */
export const shownMoney = (value: number): number => {
  const rounded = Math.sign(value) * Math.round(Math.abs(value));
  return rounded === 0 ? 0 : rounded;
};

/** An average cost as shown: 6 decimals. */
export const shownCost = (cost: number | null): number | null =>
  cost === null ? null : Math.round(cost * 1e6) / 1e6;
