/** Pure rules of the reports besides valuation: ABC grades and FIFO ageing (docs/reports.md). */

type AbcGrade = 'A' | 'B' | 'C' | 'U';

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

/**
 * The same buckets as SQL: one `sum(<units>) filter (…) as "<bucket>"` per bucket up to 90 days,
 * over an age in whole days (the rollups sum inflows by it).
 */
export const ageBucketSums = (ageDays: string, units: string): string =>
  ageLimits
    .filter(([, max]) => Number.isFinite(max))
    .map(([bucket, max], i) => {
      const after = i === 0 ? '' : ` and ${ageDays} > ${ageLimits[i - 1]![1]}`;
      return `sum(${units}) filter (where ${ageDays} <= ${max}${after})::bigint as "${bucket}"`;
    })
    .join(', ');

/**
 * FIFO ageing of the units on hand: the oldest units leave first, so what is on hand is the most
 * recent inflows. Takes the inflows per age bucket (of the ledger window read) and fills the buckets
 * newest first until they cover `onHand`; whatever they do not cover (older inflows, or stock older
 * than the window) is over 90 days.
 */
export function fifoAgeing(
  onHand: number,
  inflows: Partial<Record<AgeBucket, number>>,
): Record<AgeBucket, number> {
  const result: Record<AgeBucket, number> = { '0-30': 0, '31-60': 0, '61-90': 0, '90+': 0 };
  let left = Math.max(0, onHand);
  for (const bucket of ageBuckets) {
    const units = bucket === '90+' ? left : Math.min(left, inflows[bucket] ?? 0);
    result[bucket] += units;
    left -= units;
  }
  return result;
}
