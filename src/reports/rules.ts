/** Pure rules of the reports besides valuation: ABC grades and FIFO ageing (docs/reports.md). */

export type AbcGrade = 'A' | 'B' | 'C' | 'U';

/** Cumulative shares where grade A ends and grade B ends. */
export const abcCutoffs = { a: 0.8, b: 0.95 } as const;

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

/** Age buckets in days: 0–30, 31–60, 61–90, over 90. */
export const ageBuckets = ['0-30', '31-60', '61-90', '90+'] as const;
export type AgeBucket = (typeof ageBuckets)[number];

export const ageBucketOf = (ageDays: number): AgeBucket =>
  ageDays <= 30 ? '0-30' : ageDays <= 60 ? '31-60' : ageDays <= 90 ? '61-90' : '90+';

/**
 * FIFO ageing of the units on hand: the oldest units leave first, so what is on hand is the most
 * recent inflows. Walks the inflows newest first until they cover `onHand`; whatever they do not
 * cover (older inflows, or stock older than the ledger window read) is over 90 days.
 * `inflows`: units in per day, any order; `today` and each `day` as `YYYY-MM-DD` (UTC).
 */
export function fifoAgeing(
  onHand: number,
  inflows: { day: string; units: number }[],
  today: string,
): Record<AgeBucket, number> {
  const result: Record<AgeBucket, number> = { '0-30': 0, '31-60': 0, '61-90': 0, '90+': 0 };
  let left = Math.max(0, onHand);
  const todayMs = Date.parse(`${today}T00:00:00Z`);
  for (const inflow of [...inflows].sort((a, b) => (a.day < b.day ? 1 : a.day > b.day ? -1 : 0))) {
    if (left === 0) break;
    const units = Math.min(left, inflow.units);
    const age = Math.round((todayMs - Date.parse(`${inflow.day}T00:00:00Z`)) / 86_400_000);
    result[ageBucketOf(age)] += units;
    left -= units;
  }
  result['90+'] += left;
  return result;
}
