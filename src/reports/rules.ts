/** Pure rules of the reports besides valuation: ABC grades and FIFO ageing (docs/reports.md). */

export type AbcGrade = 'A' | 'B' | 'C' | 'U';

/** Cumulative shares where grade A ends and grade B ends. */
const abcCutoffs = { a: 0.8, b: 0.95 } as const;

/**
 * Grades items by their share of the total (revenue or units): sorted by amount, largest first
 * (ties by key), an item is A while the share of the items before it is below 0.80, B below 0.95,
 * else C; an item with nothing is U. So the largest item is always A, and an item straddling a
 * cut-off takes the better grade.
 */
export function gradeAbc<T extends { key: string; amount: number }>(
  items: T[],
): (T & { share: number; cumulativeShare: number; grade: AbcGrade })[] {
  const total = items.reduce((sum, i) => sum + Math.max(0, i.amount), 0);
  const sorted = [...items].sort(
    (a, b) => b.amount - a.amount || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
  );
  let before = 0;
  return sorted.map((item) => {
    if (item.amount <= 0 || total === 0)
      return { ...item, share: 0, cumulativeShare: before / (total || 1), grade: 'U' };
    const share = item.amount / total;
    const grade: AbcGrade = before < abcCutoffs.a ? 'A' : before < abcCutoffs.b ? 'B' : 'C';
    before += share;
    return { ...item, share, cumulativeShare: before, grade };
  });
}

/** Age buckets in days: 0–30, 31–60, 61–90, over 90 (each bucket's oldest age, in order). */
const ageLimits = [
  ['0-30', 30],
  ['31-60', 60],
  ['61-90', 90],
  ['90+', Number.POSITIVE_INFINITY],
] as const;
export const ageBuckets = ageLimits.map(([b]) => b);
export type AgeBucket = (typeof ageLimits)[number][0];

export const ageBucketOf = (ageDays: number): AgeBucket => ageLimits.find(([, max]) => ageDays <= max)![0];

/** Units received on one UTC day (`YYYY-MM-DD`) that are still on hand. */
export interface Layer {
  day: string;
  units: number;
}

/**
 * FIFO: the oldest units leave first, so what is on hand is always the newest inflows, in ledger
 * time, whatever stock did on the way (below zero included). Takes candidate inflows (days may
 * repeat) and keeps the newest that cover `onHand`, the oldest kept cut to fit: newest first, one per
 * day. When nothing is kept but there were inflows, one layer of 0 units marks the newest consumed
 * day, so a later inflow can tell whether it is older than what was consumed (`coversOnTop`).
 */
export function newestCovering(candidates: Layer[], onHand: number): Layer[] {
  const byDay = new Map<string, number>();
  for (const c of candidates) byDay.set(c.day, (byDay.get(c.day) ?? 0) + Math.max(0, c.units));
  const days = [...byDay.keys()].sort().reverse();
  const layers: Layer[] = [];
  let left = Math.max(0, onHand);
  for (const day of days) {
    if (left === 0) break;
    const units = Math.min(left, byDay.get(day)!);
    if (units === 0) continue;
    layers.push({ day, units });
    left -= units;
  }
  return layers.length === 0 && days.length > 0 ? [{ day: days[0]!, units: 0 }] : layers;
}

/**
 * Whether a level's layers plus new inflows are enough to cover it again (`newestCovering` over
 * both): every inflow the layers leave out was consumed and is no newer than their oldest day, so
 * the answer is exact unless a new inflow is older than that day (a backdated inflow: then what
 * FIFO consumed was newer, and the level is covered from its whole ledger instead).
 */
export function coversOnTop(layers: Layer[], inflows: Layer[]): boolean {
  if (layers.length === 0) return true;
  // Days as YYYY-MM-DD text: the first in sort order is the oldest.
  const oldest = layers.map((l) => l.day).sort()[0]!;
  return inflows.every((i) => i.day >= oldest);
}

/** Age in whole days of a UTC day (`YYYY-MM-DD`) on `today` (`YYYY-MM-DD`). */
export const ageDays = (day: string, today: string): number =>
  Math.round((Date.parse(`${today}T00:00:00Z`) - Date.parse(`${day}T00:00:00Z`)) / 86_400_000);

/** Units per age bucket of FIFO layers on `today`. */
export function ageLayers(layers: Layer[], today: string): Record<AgeBucket, number> {
  const result: Record<AgeBucket, number> = { '0-30': 0, '31-60': 0, '61-90': 0, '90+': 0 };
  for (const l of layers) result[ageBucketOf(ageDays(l.day, today))] += l.units;
  return result;
}
